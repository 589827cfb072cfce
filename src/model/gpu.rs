//! GPU identities: the UUIDs that name GPUs in attribute lists (`gpu_ids`, `gpu_cache`,
//! `gpu_compression`, `vidmem_gpu`), as NvSciBuf's `NvSciRmGpuId` does.

use std::fmt;

/// A GPU's identity: a 16-byte UUID (Vulkan's `deviceUUID`, CUDA's `cuDeviceGetUuid`,
/// NvSciBuf's `NvSciRmGpuId`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GpuId(pub [u8; 16]);

/// Text that is not a GPU UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a GPU UUID (32 hex digits, dashes optional, `GPU-` prefix optional)")]
pub struct BadGpuId(pub String);

impl GpuId {
    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (dashes optional, as `nvidia-smi -L` prints
    /// after `GPU-`; the prefix is accepted).
    pub fn parse(s: &str) -> Result<GpuId, BadGpuId> {
        let bad = || BadGpuId(s.to_string());
        let hex: Vec<u8> = s
            .trim()
            .trim_start_matches("GPU-")
            .bytes()
            .filter(|c| *c != b'-')
            .collect();
        if hex.len() != 32 {
            return Err(bad());
        }
        let mut b = [0u8; 16];
        for (i, byte) in b.iter_mut().enumerate() {
            let digit = |c: u8| (c as char).to_digit(16).ok_or_else(bad);
            *byte = (digit(hex[2 * i])? * 16 + digit(hex[2 * i + 1])?) as u8;
        }
        Ok(GpuId(b))
    }
}

impl fmt::Display for GpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for GpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GpuId({self})")
    }
}

impl std::str::FromStr for GpuId {
    type Err = BadGpuId;
    fn from_str(s: &str) -> Result<GpuId, BadGpuId> {
        GpuId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let id = GpuId::parse("GPU-0123abcd-4567-89ef-0123-456789abcdef").unwrap();
        assert_eq!(id.to_string(), "0123abcd-4567-89ef-0123-456789abcdef");
        assert_eq!(GpuId::parse(&id.to_string()), Ok(id));
        assert_eq!(GpuId::parse("0123ABCD456789EF0123456789ABCDEF"), Ok(id));
        assert!(GpuId::parse("xyz").is_err());
        assert!(GpuId::parse("GPU-0123abcd-4567-89ef-0123-456789abcdeg").is_err());
        assert!(GpuId::parse("0123abcd-4567-89ef-0123-456789abcdef00").is_err());
    }
}
