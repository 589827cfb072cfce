//! Fuzz target over the wire decoder: any bytes with any fd count must decode or be refused,
//! never panic, never allocate beyond the limits; what decodes must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unibuf::ipc::wire;

fuzz_target!(|data: &[u8]| {
    let Some((&nfds, msg)) = data.split_first() else {
        return;
    };
    // The fd count is taken from the first byte, 0..=MAX_FDS+1, as recvmsg could report it.
    let nfds = nfds as usize % (wire::MAX_FDS + 2);
    if msg.len() > wire::MAX_MESSAGE {
        return; // the endpoint refuses longer messages before decoding
    }
    if let Ok(m) = wire::decode(msg, nfds) {
        let again = wire::encode(&m).expect("a decoded message re-encodes");
        // The encoding is canonical except for the minor version the peer wrote.
        assert_eq!(&again[..5], &msg[..5]);
        assert_eq!(&again[6..], &msg[6..]);
        assert_eq!(wire::decode(&again, nfds).expect("re-decodes"), m);
    }
});
