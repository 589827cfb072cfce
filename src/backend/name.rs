//! [`BufferName`]: a buffer's name as the kernel keeps it.

use crate::error::{Error, Result};
use crate::sys;
use std::sync::Arc;

/// The longest dma-buf name: `DMA_BUF_NAME_LEN` less the NUL.
pub const MAX_NAME_LEN: usize = sys::dma_buf::DMA_BUF_NAME_LEN - 1;

/// A buffer name that fits `DMA_BUF_SET_NAME`: at most [`MAX_NAME_LEN`] (31) bytes, no NUL.
///
/// [`BufferName::new`] cuts a longer name at the last character boundary at or before byte 31;
/// this is the only place the cut is made. The string is shared: every buffer of one list can
/// carry the same name without copying it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BufferName(Arc<str>);

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl BufferName {
    /// `name` cut to 31 bytes at a character boundary; refuses a NUL byte anywhere in it.
    pub fn new(name: &str) -> Result<BufferName> {
        Ok(BufferName(Self::check(name)?.into()))
    }

    /// Like [`BufferName::new`], keeping `name`'s allocation when it already fits.
    pub fn from_shared(name: &Arc<str>) -> Result<BufferName> {
        let fitted = Self::check(name)?;
        Ok(BufferName(if fitted.len() == name.len() {
            name.clone()
        } else {
            fitted.into()
        }))
    }

    fn check(name: &str) -> Result<&str> {
        // A plain byte loop: names are short, and `str::contains` goes through `memchr`'s set-up.
        if name.bytes().any(|b| b == 0) {
            return Err(Error::InvalidArgument(format!(
                "buffer name {name:?} contains a NUL byte"
            )));
        }
        Ok(cut(name, MAX_NAME_LEN))
    }

    /// This name with `-<i>` appended, the base cut so that the suffix stays visible.
    pub fn with_index(&self, i: usize) -> BufferName {
        let suffix = format!("-{i}");
        let base = cut(&self.0, MAX_NAME_LEN.saturating_sub(suffix.len()));
        BufferName(format!("{base}{suffix}").into())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared string.
    pub fn shared(&self) -> &Arc<str> {
        &self.0
    }

    /// The shared string, by value (no reference-count traffic).
    pub fn into_shared(self) -> Arc<str> {
        self.0
    }

    /// Whether the name is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for BufferName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for BufferName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_on_char_boundaries() {
        assert_eq!(BufferName::new("short").unwrap().as_str(), "short");
        let long = "x".repeat(40);
        assert_eq!(BufferName::new(&long).unwrap().as_str().len(), 31);
        let multi = format!("{}é", "a".repeat(30)); // 'é' would straddle byte 31
        assert_eq!(BufferName::new(&multi).unwrap().as_str(), "a".repeat(30));
        assert!(BufferName::new("a\0b").is_err());
        let shared: Arc<str> = "fits".into();
        assert!(Arc::ptr_eq(
            BufferName::from_shared(&shared).unwrap().shared(),
            &shared
        ));
    }

    #[test]
    fn indexed_names_keep_the_suffix() {
        let n = BufferName::new(&"n".repeat(40)).unwrap();
        let i = n.with_index(12);
        assert_eq!(i.as_str().len(), 31);
        assert!(i.as_str().ends_with("-12"));
        // 28 + 2 bytes: the 'é' would straddle the 29 bytes left for the base.
        let m = BufferName::new(&format!("{}é", "a".repeat(28))).unwrap();
        assert_eq!(m.with_index(3).as_str(), format!("{}-3", "a".repeat(28)));
    }
}
