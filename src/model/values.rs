//! The small value types attribute values carry: image layout kind, color standard, scan
//! type, element data type, and padding. Each enum has a stable wire code and a file name.

wire_enum!(
    /// Image memory layout.
    LayoutKind {
        /// Rows one after another, `pitch` bytes apart (DRM modifier `LINEAR`).
        PitchLinear = 0, "pitch_linear";
        /// Tiled as the DRM format modifier (`image.modifier`) says.
        Tiled = 1, "tiled";
    }
);

wire_enum!(
    /// Color standard of an image.
    ColorStd {
        /// sRGB.
        Srgb = 0, "srgb";
        /// BT.601, limited range.
        Bt601 = 1, "bt601";
        /// BT.601, full range.
        Bt601Full = 2, "bt601_full";
        /// BT.709, limited range.
        Bt709 = 3, "bt709";
        /// BT.2020, limited range.
        Bt2020 = 4, "bt2020";
        /// Raw sensor data (Bayer).
        Raw = 5, "raw";
    }
);

wire_enum!(
    /// Scan type of an image.
    ScanType {
        /// Whole frames.
        Progressive = 0, "progressive";
        /// Two fields per frame, stored one after the other in each plane (top field first).
        Interlaced = 1, "interlaced";
    }
);

wire_enum!(
    /// Element data type of tensors and arrays.
    DataType {
        /// Signed 8-bit integer.
        Int8 = 0, "int8";
        /// Unsigned 8-bit integer.
        Uint8 = 1, "uint8";
        /// Signed 16-bit integer.
        Int16 = 2, "int16";
        /// Unsigned 16-bit integer.
        Uint16 = 3, "uint16";
        /// IEEE half float.
        Float16 = 4, "float16";
        /// Signed 32-bit integer.
        Int32 = 5, "int32";
        /// Unsigned 32-bit integer.
        Uint32 = 6, "uint32";
        /// IEEE single float.
        Float32 = 7, "float32";
        /// Signed 64-bit integer.
        Int64 = 8, "int64";
        /// IEEE double float.
        Float64 = 9, "float64";
    }
);

impl DataType {
    /// Size of one element in bytes.
    pub const fn size(self) -> u64 {
        match self {
            DataType::Int8 | DataType::Uint8 => 1,
            DataType::Int16 | DataType::Uint16 | DataType::Float16 => 2,
            DataType::Int32 | DataType::Uint32 | DataType::Float32 => 4,
            DataType::Int64 | DataType::Float64 => 8,
        }
    }
}

/// Padding around an image in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Padding {
    /// Rows above.
    pub top: u32,
    /// Rows below.
    pub bottom: u32,
    /// Columns left.
    pub left: u32,
    /// Columns right.
    pub right: u32,
}

impl Padding {
    /// Maximum per side.
    pub fn max(self, o: Padding) -> Padding {
        Padding {
            top: self.top.max(o.top),
            bottom: self.bottom.max(o.bottom),
            left: self.left.max(o.left),
            right: self.right.max(o.right),
        }
    }
}
