//! Unit tests of the boundary: handle validation, set-once through the C calls, the key table.

use crate::attr::*;
use crate::keys::{ub_key, KEY_NAMES};
use crate::object::*;
use crate::status::*;
use std::ptr::null_mut;
use unibuf_rs::attr::Key;

#[test]
fn key_constants_are_the_library_codes() {
    for (c, name) in KEY_NAMES {
        let k = Key::from_name(name).unwrap_or_else(|| panic!("no key {name}"));
        assert_eq!(*c as u32, u32::from(k.code()), "{name}");
    }
    let missing: Vec<_> = Key::ALL
        .iter()
        .filter(|k| !KEY_NAMES.iter().any(|(_, n)| *n == k.name()))
        .map(|k| k.name())
        .collect();
    // Not an error (the generic calls take any code), but the table should be complete.
    assert!(
        missing.is_empty(),
        "keys without a UB_KEY_ constant: {missing:?}"
    );
}

fn list() -> (*mut ub_module, *mut ub_attr_list) {
    let mut m = null_mut();
    let mut l = null_mut();
    // SAFETY: valid out-pointers.
    unsafe {
        assert_eq!(ub_module_open(&mut m), UB_SUCCESS);
        assert_eq!(ub_attr_list_create(m, &mut l), UB_SUCCESS);
    }
    (m, l)
}

#[test]
fn stale_null_and_wrong_kind_handles_are_refused() {
    let (m, l) = list();
    assert_eq!(ub_attr_list_free(l), UB_SUCCESS);
    assert_eq!(ub_attr_list_free(l), UB_ERR_BAD_PARAMETER);
    // SAFETY: the library's message is a valid C string until the next failing call.
    let msg = unsafe { std::ffi::CStr::from_ptr(ub_last_error_message()) };
    assert!(msg.to_str().unwrap().contains("already freed"), "{msg:?}");
    assert_eq!(ub_attr_list_free(null_mut()), UB_ERR_BAD_PARAMETER);
    assert_eq!(ub_obj_free(m.cast()), UB_ERR_BAD_PARAMETER);
    assert_eq!(
        ub_attr_list_free(0xdead_beef as *mut _),
        UB_ERR_BAD_PARAMETER
    );
    // A new handle in the freed slot is a different token: the stale one stays dead.
    let (m2, l2) = list();
    assert_ne!(l2, l);
    assert_eq!(ub_attr_list_free(l), UB_ERR_BAD_PARAMETER);
    assert_eq!(ub_attr_list_free(l2), UB_SUCCESS);
    assert_eq!(ub_module_close(m2), UB_SUCCESS);
    assert_eq!(ub_module_close(m), UB_SUCCESS);
}

#[test]
fn set_once_and_value_forms() {
    let (m, l) = list();
    let types = 1u8;
    let size = 4096u64;
    // Two GPU UUIDs (NvSciRmGpuId: 16 bytes each), in sorted order as the set keeps them.
    let ids = [[0x11u8; 16], [0x22u8; 16]].concat();
    let kv = |k: ub_key, p: *const u8, n: usize| ub_attr_kv {
        key: k as u32,
        value: p.cast(),
        len: n,
    };
    let pairs = [
        kv(ub_key::UB_KEY_TYPES, &types, 1),
        kv(ub_key::UB_KEY_RAW_SIZE, (&size as *const u64).cast(), 8),
        kv(ub_key::UB_KEY_GPU_IDS, ids.as_ptr(), ids.len()),
        kv(ub_key::UB_KEY_ACCESSOR_NAME, c"cam".as_ptr().cast(), 4),
    ];
    // SAFETY: the pairs point to live values.
    unsafe {
        assert_eq!(ub_attr_list_set_attrs(l, pairs.as_ptr(), 4), UB_SUCCESS);
        assert_eq!(
            ub_attr_list_set_attrs(l, pairs[1..].as_ptr(), 1),
            UB_ERR_BAD_PARAMETER
        );
        assert_eq!(ub_last_error_key(), 0x0101);
        assert_eq!(
            ub_attr_list_set_attrs(l, null_mut(), 1),
            UB_ERR_BAD_PARAMETER
        );
        let mut get = [
            kv(ub_key::UB_KEY_GPU_IDS, std::ptr::null(), 0),
            kv(ub_key::UB_KEY_ACCESSOR_NAME, std::ptr::null(), 0),
            kv(ub_key::UB_KEY_RAW_ALIGN, std::ptr::null(), 0),
        ];
        assert_eq!(ub_attr_list_get_attrs(l, get.as_mut_ptr(), 3), UB_SUCCESS);
        assert_eq!(
            std::slice::from_raw_parts(get[0].value.cast::<u8>(), get[0].len),
            &ids[..]
        );
        assert_eq!(
            std::slice::from_raw_parts(get[1].value.cast::<u8>(), get[1].len),
            b"cam"
        );
        assert!(get[2].value.is_null() && get[2].len == 0);
    }
    assert_eq!(ub_attr_list_free(l), UB_SUCCESS);
    assert_eq!(ub_module_close(m), UB_SUCCESS);
}
