//! A minimal PNG writer (8-bit RGB; Sub/Up row filters and a run-length-only fixed-Huffman
//! deflate) for frames seen through a pipeline. Small enough to carry without a dependency; any PNG
//! reader opens its output, and flat test patterns compress to a few kilobytes.

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

/// Bit writer for deflate: bits go out least-significant first.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, count: u32) {
        self.acc |= (value as u64) << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code: written most-significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        let mut r = 0;
        for i in 0..len {
            r |= ((code >> i) & 1) << (len - 1 - i);
        }
        self.put(r, len);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// Fixed-Huffman literal/length symbol (RFC 1951 3.2.6).
fn fixed_lit(bits: &mut Bits, sym: u32) {
    match sym {
        0..=143 => bits.code(0x30 + sym, 8),
        144..=255 => bits.code(0x190 + sym - 144, 9),
        256..=279 => bits.code(sym - 256, 7),
        _ => bits.code(0xc0 + sym - 280, 8),
    }
}

const LEN_BASE: [u32; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u32; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];

/// Deflate with one fixed-Huffman block whose only matches are byte runs (distance 1): enough
/// for filtered frames of test patterns, where rows repeat and bars are flat.
fn deflate_runs(data: &[u8]) -> Vec<u8> {
    let mut bits = Bits {
        out: Vec::new(),
        acc: 0,
        n: 0,
    };
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE = fixed Huffman
    let mut i = 0;
    while i < data.len() {
        let mut run = 0;
        if i > 0 {
            while run < 258 && i + run < data.len() && data[i + run] == data[i - 1] {
                run += 1;
            }
        }
        if run >= 3 {
            let idx = LEN_BASE
                .iter()
                .rposition(|&b| b as usize <= run)
                .unwrap_or(0);
            let idx = if run == 258 { 28 } else { idx.min(27) };
            fixed_lit(&mut bits, 257 + idx as u32);
            bits.put(run as u32 - LEN_BASE[idx], LEN_EXTRA[idx]);
            bits.code(0, 5); // distance code 0: distance 1
            i += run;
        } else {
            fixed_lit(&mut bits, data[i] as u32);
            i += 1;
        }
    }
    fixed_lit(&mut bits, 256);
    bits.finish()
}

/// Encodes `rgb` (`width * height * 3` bytes, rows top to bottom) as a PNG file. Rows are
/// filtered (first row "Sub", the others "Up") and deflated with run-length matches, so flat
/// test patterns come out small.
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
    let mut raw = Vec::with_capacity((row + 1) * height as usize);
    for (y, line) in rgb.chunks(row).enumerate() {
        if y == 0 {
            raw.push(1); // Sub: minus the pixel to the left
            for x in 0..row {
                let left = if x >= 3 { line[x - 3] } else { 0 };
                raw.push(line[x].wrapping_sub(left));
            }
        } else {
            raw.push(2); // Up: minus the pixel above
            let above = &rgb[(y - 1) * row..y * row];
            raw.extend(line.iter().zip(above).map(|(a, b)| a.wrapping_sub(*b)));
        }
    }
    let mut z = vec![0x78, 0x01];
    z.extend_from_slice(&deflate_runs(&raw));
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
    fn writes_a_decodable_file_for_inspection() {
        // A colorbar-like image; the file is checked by an external decoder in development.
        let (w, h) = (64u32, 8u32);
        let mut rgb = Vec::new();
        for _ in 0..h {
            for x in 0..w {
                rgb.extend_from_slice(if x < 32 { &[255, 255, 0] } else { &[0, 0, 255] });
            }
        }
        let png = encode_rgb(w, h, &rgb).unwrap();
        assert!(png.len() < 300, "{} bytes", png.len());
        if let Some(p) = std::env::var_os("UNIBUF_PNG_TEST_OUT") {
            std::fs::write(p, &png).unwrap();
        }
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
