//! A minimal PNG writer (8-bit RGB, zlib "stored" blocks, no compression) for frames seen through
//! a pipeline. Small enough to carry without a dependency; any PNG reader opens its output.

use crate::error::{Error, Result};
use std::path::Path;

fn crc32(data: &[&[u8]]) -> u32 {
    let mut table = [0u32; 256];
    for (n, t) in table.iter_mut().enumerate() {
        let mut c = n as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *t = c;
    }
    let mut crc = 0xffff_ffffu32;
    for d in data {
        for &b in *d {
            crc = table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
        }
    }
    crc ^ 0xffff_ffff
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += x as u32;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}

/// Encodes `rgb` (`width * height * 3` bytes, rows top to bottom) as a PNG file.
pub fn encode_rgb(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>> {
    let row = (width as usize)
        .checked_mul(3)
        .ok_or_else(|| Error::InvalidArgument("PNG width too large".into()))?;
    if width == 0 || height == 0 || rgb.len() != row * height as usize {
        return Err(Error::InvalidArgument(format!(
            "PNG of {width}x{height} needs {} RGB bytes, got {}",
            row * height as usize,
            rgb.len()
        )));
    }
    // Raw scanlines, each prefixed with filter type 0.
    let mut raw = Vec::with_capacity((row + 1) * height as usize);
    for line in rgb.chunks(row) {
        raw.push(0);
        raw.extend_from_slice(line);
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, b) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = b.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(b);
    }
    z.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

/// Converts an `XRGB8888` image (little-endian words: B, G, R, X bytes) with row pitch `pitch` to
/// packed RGB.
pub fn xrgb8888_to_rgb(width: u32, height: u32, pitch: usize, data: &[u8]) -> Result<Vec<u8>> {
    let need = pitch
        .checked_mul(height.saturating_sub(1) as usize)
        .and_then(|n| n.checked_add(width as usize * 4));
    if pitch < width as usize * 4 || need.is_none_or(|n| n > data.len()) {
        return Err(Error::InvalidArgument(format!(
            "XRGB8888 {width}x{height} with pitch {pitch} does not fit in {} bytes",
            data.len()
        )));
    }
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height as usize {
        let line = &data[y * pitch..y * pitch + width as usize * 4];
        for px in line.chunks(4) {
            out.extend_from_slice(&[px[2], px[1], px[0]]);
        }
    }
    Ok(out)
}

/// Writes an `XRGB8888` image as a PNG file.
pub fn write_xrgb8888(
    path: &Path,
    width: u32,
    height: u32,
    pitch: usize,
    data: &[u8],
) -> Result<()> {
    let rgb = xrgb8888_to_rgb(width, height, pitch, data)?;
    let png = encode_rgb(width, height, &rgb)?;
    std::fs::write(path, png).map_err(|e| {
        Error::sys(
            "write",
            path.display().to_string(),
            rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(&[b"IEND"]), 0xae42_6082);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }

    #[test]
    fn encodes_a_valid_structure() {
        let png = encode_rgb(2, 1, &[255, 0, 0, 0, 255, 0]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
        assert!(encode_rgb(2, 2, &[0; 3]).is_err());
        let rgb = xrgb8888_to_rgb(1, 2, 8, &[1, 2, 3, 0, 9, 9, 9, 9, 4, 5, 6, 0]).unwrap();
        assert_eq!(rgb, vec![3, 2, 1, 6, 5, 4]);
    }
}
