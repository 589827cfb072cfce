//! The pixel format table: planes, subsampling, bits per pixel, channel counts, and the DRM
//! fourcc ↔ V4L2 fourcc mapping.
//!
//! DRM codes come from the `drm-fourcc` crate. V4L2 codes are written here (the crate covers
//! DRM only); they follow `include/uapi/linux/videodev2.h`. Raw Bayer formats have no DRM
//! fourcc; their V4L2 codes are the unpacked ones (10/12-bit samples in 16-bit containers).

use drm_fourcc::DrmFourcc;
use std::fmt;

/// A pixel format code or name that is not in the format table (the text says which: a name,
/// `DRM <fourcc>`, `V4L2 <fourcc>`, or a wire code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown pixel format {0}")]
pub struct UnknownFormat(pub String);

/// Builds a fourcc code from four ASCII bytes (the same rule for DRM and V4L2).
pub const fn fourcc(c: &[u8; 4]) -> u32 {
    (c[0] as u32) | ((c[1] as u32) << 8) | ((c[2] as u32) << 16) | ((c[3] as u32) << 24)
}

/// One plane of a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlaneInfo {
    /// Bits per sample unit of this plane at the plane's own resolution (an NV12 CbCr plane
    /// has 16: one Cb and one Cr byte per 2x2 luma pixels).
    pub bpp: u32,
    /// Horizontal subsampling (1 or 2).
    pub hsub: u32,
    /// Vertical subsampling (1 or 2).
    pub vsub: u32,
    /// Interleaved components per sample unit (Y = 1, CbCr = 2, YUYV = 2, XRGB = 4).
    pub channels: u32,
}

/// Color family of a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColorFamily {
    /// Y'CbCr.
    Yuv,
    /// RGB.
    Rgb,
    /// One gray/luma or generic red channel.
    Grey,
    /// Raw Bayer sensor data.
    Bayer,
}

/// A format's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatInfo {
    /// Name used in files (`NV12`).
    pub name: &'static str,
    /// DRM fourcc, if DRM has this format.
    pub drm: Option<DrmFourcc>,
    /// V4L2 pixel format fourcc, if V4L2 has this format (single-plane variant).
    pub v4l2: Option<u32>,
    /// The planes (1 to 3).
    pub planes: &'static [PlaneInfo],
    /// Bits of each component when all components are the same size and byte-sized (8 or
    /// 16), which makes the format usable as an NHWC tensor; `None` otherwise.
    pub component_bits: Option<u32>,
    /// Color family.
    pub family: ColorFamily,
}

const fn p(bpp: u32, hsub: u32, vsub: u32, channels: u32) -> PlaneInfo {
    PlaneInfo {
        bpp,
        hsub,
        vsub,
        channels,
    }
}

const Y8: PlaneInfo = p(8, 1, 1, 1);

macro_rules! formats {
    ($( $(#[$doc:meta])* $v:ident = $name:expr, $drm:expr, $v4l2:expr, [$($plane:expr),+], $cbits:expr, $fam:ident; )*) => {
        /// A pixel format of the table.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum PixelFormat { $( $(#[$doc])* $v, )* }

        impl PixelFormat {
            /// Every format in the table.
            pub const ALL: &'static [PixelFormat] = &[ $( PixelFormat::$v, )* ];

            /// This format's description.
            pub const fn info(self) -> &'static FormatInfo {
                match self {
                    $( PixelFormat::$v => {
                        const INFO: FormatInfo = FormatInfo {
                            name: $name,
                            drm: $drm,
                            v4l2: $v4l2,
                            planes: &[$($plane),+],
                            component_bits: $cbits,
                            family: ColorFamily::$fam,
                        };
                        &INFO
                    } )*
                }
            }
        }
    };
}

const fn v(c: &[u8; 4]) -> Option<u32> {
    Some(fourcc(c))
}

formats! {
    /// Y plane + interleaved CbCr plane, 4:2:0.
    Nv12 = "NV12", Some(DrmFourcc::Nv12), v(b"NV12"), [Y8, p(16, 2, 2, 2)], Some(8), Yuv;
    /// Y plane + interleaved CrCb plane, 4:2:0.
    Nv21 = "NV21", Some(DrmFourcc::Nv21), v(b"NV21"), [Y8, p(16, 2, 2, 2)], Some(8), Yuv;
    /// Y plane + interleaved CbCr plane, 4:2:2.
    Nv16 = "NV16", Some(DrmFourcc::Nv16), v(b"NV16"), [Y8, p(16, 2, 1, 2)], Some(8), Yuv;
    /// Y plane + interleaved CrCb plane, 4:2:2.
    Nv61 = "NV61", Some(DrmFourcc::Nv61), v(b"NV61"), [Y8, p(16, 2, 1, 2)], Some(8), Yuv;
    /// Y plane + interleaved CbCr plane, 4:4:4.
    Nv24 = "NV24", Some(DrmFourcc::Nv24), v(b"NV24"), [Y8, p(16, 1, 1, 2)], Some(8), Yuv;
    /// Three planes Y, Cb, Cr, 4:2:0 (V4L2 `YU12`).
    Yuv420 = "YUV420", Some(DrmFourcc::Yuv420), v(b"YU12"), [Y8, p(8, 2, 2, 1), p(8, 2, 2, 1)], Some(8), Yuv;
    /// Three planes Y, Cr, Cb, 4:2:0 (V4L2 `YV12`).
    Yvu420 = "YVU420", Some(DrmFourcc::Yvu420), v(b"YV12"), [Y8, p(8, 2, 2, 1), p(8, 2, 2, 1)], Some(8), Yuv;
    /// Three planes Y, Cb, Cr, 4:2:2 (V4L2 `422P`).
    Yuv422 = "YUV422", Some(DrmFourcc::Yuv422), v(b"422P"), [Y8, p(8, 2, 1, 1), p(8, 2, 1, 1)], Some(8), Yuv;
    /// Packed Y0 Cb Y1 Cr, 4:2:2.
    Yuyv = "YUYV", Some(DrmFourcc::Yuyv), v(b"YUYV"), [p(16, 1, 1, 2)], Some(8), Yuv;
    /// Packed Cb Y0 Cr Y1, 4:2:2.
    Uyvy = "UYVY", Some(DrmFourcc::Uyvy), v(b"UYVY"), [p(16, 1, 1, 2)], Some(8), Yuv;
    /// 8-bit gray (DRM `R8`, V4L2 `GREY`).
    Grey = "GREY", Some(DrmFourcc::R8), v(b"GREY"), [Y8], Some(8), Grey;
    /// 16-bit gray / red (DRM `R16`, V4L2 `Y16`).
    R16 = "R16", Some(DrmFourcc::R16), v(b"Y16 "), [p(16, 1, 1, 1)], Some(16), Grey;
    /// 16-bit RGB 5:6:5 (V4L2 `RGBP`).
    Rgb565 = "RGB565", Some(DrmFourcc::Rgb565), v(b"RGBP"), [p(16, 1, 1, 3)], None, Rgb;
    /// 24-bit, bytes B, G, R in memory (V4L2 `BGR3`).
    Rgb888 = "RGB888", Some(DrmFourcc::Rgb888), v(b"BGR3"), [p(24, 1, 1, 3)], Some(8), Rgb;
    /// 24-bit, bytes R, G, B in memory (V4L2 `RGB3`).
    Bgr888 = "BGR888", Some(DrmFourcc::Bgr888), v(b"RGB3"), [p(24, 1, 1, 3)], Some(8), Rgb;
    /// 32-bit, bytes B, G, R, X in memory (V4L2 `XR24`).
    Xrgb8888 = "XRGB8888", Some(DrmFourcc::Xrgb8888), v(b"XR24"), [p(32, 1, 1, 4)], Some(8), Rgb;
    /// 32-bit, bytes B, G, R, A in memory (V4L2 `AR24`).
    Argb8888 = "ARGB8888", Some(DrmFourcc::Argb8888), v(b"AR24"), [p(32, 1, 1, 4)], Some(8), Rgb;
    /// 32-bit, bytes R, G, B, X in memory (V4L2 `XB24`).
    Xbgr8888 = "XBGR8888", Some(DrmFourcc::Xbgr8888), v(b"XB24"), [p(32, 1, 1, 4)], Some(8), Rgb;
    /// 32-bit, bytes R, G, B, A in memory (V4L2 `AB24`).
    Abgr8888 = "ABGR8888", Some(DrmFourcc::Abgr8888), v(b"AB24"), [p(32, 1, 1, 4)], Some(8), Rgb;
    /// 32-bit A:R:G:B 2:10:10:10 (V4L2 `AR30`).
    Argb2101010 = "ARGB2101010", Some(DrmFourcc::Argb2101010), v(b"AR30"), [p(32, 1, 1, 4)], None, Rgb;
    /// 10-bit Y plane + CbCr plane in 16-bit containers, 4:2:0.
    P010 = "P010", Some(DrmFourcc::P010), v(b"P010"), [p(16, 1, 1, 1), p(32, 2, 2, 2)], None, Yuv;
    /// Bayer BGGR, 8 bits.
    Sbggr8 = "SBGGR8", None, v(b"BA81"), [Y8], Some(8), Bayer;
    /// Bayer GBRG, 8 bits.
    Sgbrg8 = "SGBRG8", None, v(b"GBRG"), [Y8], Some(8), Bayer;
    /// Bayer GRBG, 8 bits.
    Sgrbg8 = "SGRBG8", None, v(b"GRBG"), [Y8], Some(8), Bayer;
    /// Bayer RGGB, 8 bits.
    Srggb8 = "SRGGB8", None, v(b"RGGB"), [Y8], Some(8), Bayer;
    /// Bayer BGGR, 10 bits in 16.
    Sbggr10 = "SBGGR10", None, v(b"BG10"), [p(16, 1, 1, 1)], None, Bayer;
    /// Bayer GBRG, 10 bits in 16.
    Sgbrg10 = "SGBRG10", None, v(b"GB10"), [p(16, 1, 1, 1)], None, Bayer;
    /// Bayer GRBG, 10 bits in 16.
    Sgrbg10 = "SGRBG10", None, v(b"BA10"), [p(16, 1, 1, 1)], None, Bayer;
    /// Bayer RGGB, 10 bits in 16.
    Srggb10 = "SRGGB10", None, v(b"RG10"), [p(16, 1, 1, 1)], None, Bayer;
    /// Bayer BGGR, 12 bits in 16.
    Sbggr12 = "SBGGR12", None, v(b"BG12"), [p(16, 1, 1, 1)], None, Bayer;
    /// Bayer GBRG, 12 bits in 16.
    Sgbrg12 = "SGBRG12", None, v(b"GB12"), [p(16, 1, 1, 1)], None, Bayer;
    /// Bayer GRBG, 12 bits in 16.
    Sgrbg12 = "SGRBG12", None, v(b"BA12"), [p(16, 1, 1, 1)], None, Bayer;
    /// Bayer RGGB, 12 bits in 16.
    Srggb12 = "SRGGB12", None, v(b"RG12"), [p(16, 1, 1, 1)], None, Bayer;
    /// Bayer BGGR, 16 bits (V4L2 `BYR2`).
    Sbggr16 = "SBGGR16", None, v(b"BYR2"), [p(16, 1, 1, 1)], Some(16), Bayer;
    /// Bayer GBRG, 16 bits.
    Sgbrg16 = "SGBRG16", None, v(b"GB16"), [p(16, 1, 1, 1)], Some(16), Bayer;
    /// Bayer GRBG, 16 bits.
    Sgrbg16 = "SGRBG16", None, v(b"GR16"), [p(16, 1, 1, 1)], Some(16), Bayer;
    /// Bayer RGGB, 16 bits.
    Srggb16 = "SRGGB16", None, v(b"RG16"), [p(16, 1, 1, 1)], Some(16), Bayer;
}

/// Bit set in [`PixelFormat::code`] for formats without a DRM fourcc (their V4L2 fourcc
/// with this bit set; V4L2 `RG16` and DRM `RG16` name different formats, so the spaces must
/// not mix). DRM reserves this bit for big-endian variants, which the table does not hold.
pub const V4L2_ONLY_CODE_BIT: u32 = 1 << 31;

impl PixelFormat {
    /// Name used in files (`NV12`).
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The DRM fourcc, if DRM has this format.
    pub fn drm_fourcc(self) -> Option<DrmFourcc> {
        self.info().drm
    }

    /// The V4L2 pixel format, if V4L2 has this format.
    pub fn v4l2_fourcc(self) -> Option<u32> {
        self.info().v4l2
    }

    /// The planes.
    pub fn planes(self) -> &'static [PlaneInfo] {
        self.info().planes
    }

    /// Stable wire code: the DRM fourcc, or for formats DRM lacks the V4L2 fourcc with
    /// [`V4L2_ONLY_CODE_BIT`] set.
    pub fn code(self) -> u32 {
        match (self.info().drm, self.info().v4l2) {
            (Some(d), _) => d as u32,
            (None, Some(v)) => v | V4L2_ONLY_CODE_BIT,
            (None, None) => 0,
        }
    }

    /// The format with this wire code; an unknown code is [`UnknownFormat`].
    pub fn from_code(code: u32) -> Result<PixelFormat, UnknownFormat> {
        PixelFormat::ALL
            .iter()
            .copied()
            .find(|f| f.code() == code)
            .ok_or_else(|| UnknownFormat(describe_code(code)))
    }

    /// The format with this DRM fourcc.
    pub fn from_drm(code: u32) -> Result<PixelFormat, UnknownFormat> {
        PixelFormat::ALL
            .iter()
            .copied()
            .find(|f| f.info().drm.map(|d| d as u32) == Some(code))
            .ok_or_else(|| UnknownFormat(format!("DRM {}", describe_code(code))))
    }

    /// The format with this V4L2 pixel format.
    pub fn from_v4l2(code: u32) -> Result<PixelFormat, UnknownFormat> {
        PixelFormat::ALL
            .iter()
            .copied()
            .find(|f| f.info().v4l2 == Some(code))
            .ok_or_else(|| UnknownFormat(format!("V4L2 {}", describe_code(code))))
    }

    /// The format with this name (case-insensitive; `R8` is accepted for `GREY`).
    pub fn from_name(name: &str) -> Result<PixelFormat, UnknownFormat> {
        let up = name.to_ascii_uppercase();
        let up = if up == "R8" { "GREY".to_string() } else { up };
        PixelFormat::ALL
            .iter()
            .copied()
            .find(|f| f.name() == up)
            .ok_or_else(|| UnknownFormat(name.to_string()))
    }
}

/// A fourcc printed as its characters when printable, plus hex.
pub fn describe_code(code: u32) -> String {
    let b = (code & !V4L2_ONLY_CODE_BIT).to_le_bytes();
    if b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        format!("'{}' ({code:#010x})", String::from_utf8_lossy(&b))
    } else {
        format!("{code:#010x}")
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub use super::modifier::TileGeometry;

/// The tile geometry of `modifier`, or `None` if unibuf cannot lay it out
/// ([`super::modifier::layout_of`] says why).
pub fn modifier_tile(modifier: u64) -> Option<TileGeometry> {
    super::modifier::layout_of(modifier).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for f in PixelFormat::ALL {
            assert!(seen.insert(f.code()), "{f} code collides");
            assert_eq!(PixelFormat::from_code(f.code()), Ok(*f));
            assert_eq!(PixelFormat::from_name(f.name()), Ok(*f));
            if let Some(d) = f.drm_fourcc() {
                assert_eq!(PixelFormat::from_drm(d as u32), Ok(*f));
            }
            if let Some(v) = f.v4l2_fourcc() {
                assert_eq!(PixelFormat::from_v4l2(v), Ok(*f));
            }
            assert!((1..=3).contains(&f.planes().len()));
        }
        assert!(matches!(
            PixelFormat::from_code(fourcc(b"NV13")),
            Err(UnknownFormat(_))
        ));
    }

    #[test]
    fn fourccs_match_kernel_headers() {
        // Values from include/uapi/drm/drm_fourcc.h and include/uapi/linux/videodev2.h.
        assert_eq!(fourcc(b"NV12"), 0x3231_564e);
        assert_eq!(
            PixelFormat::Nv12.drm_fourcc().map(|d| d as u32),
            Some(0x3231_564e)
        );
        assert_eq!(
            PixelFormat::Xrgb8888.drm_fourcc().map(|d| d as u32),
            Some(0x3432_5258)
        );
        assert_eq!(PixelFormat::Grey.v4l2_fourcc(), Some(0x5945_5247));
        assert_eq!(PixelFormat::Sbggr8.v4l2_fourcc(), Some(0x3138_4142));
        assert_eq!(PixelFormat::from_name("r8"), Ok(PixelFormat::Grey));
        // V4L2 SRGGB16 and DRM RGB565 share 'RG16': the wire codes must differ.
        assert_eq!(PixelFormat::Srggb16.v4l2_fourcc(), Some(fourcc(b"RG16")));
        assert_eq!(
            PixelFormat::Rgb565.drm_fourcc().map(|d| d as u32),
            Some(fourcc(b"RG16"))
        );
        assert_ne!(PixelFormat::Srggb16.code(), PixelFormat::Rgb565.code());
    }

    #[test]
    fn bayer_formats_cover_all_orders_and_depths() {
        let bayer: Vec<_> = PixelFormat::ALL
            .iter()
            .filter(|f| f.info().family == ColorFamily::Bayer)
            .collect();
        assert_eq!(bayer.len(), 16);
        assert!(bayer.iter().all(|f| f.drm_fourcc().is_none()));
    }

    #[test]
    fn modifiers() {
        assert_eq!(modifier_tile(0).map(|t| t.width_bytes), Some(1));
        assert!(modifier_tile(u64::from(drm_fourcc::DrmModifier::I915_x_tiled)).is_some());
        assert_eq!(modifier_tile(0x00ff_ffff_ffff_ffff), None);
    }
}
