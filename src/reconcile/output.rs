//! Validation of the merged list and computation of the outputs (layouts, size, memory).

use super::*;

pub(super) struct Ctx<'a> {
    merged: &'a AttrList,
    modifier: u64,
    ls: &'a [(usize, &'a AttrList)],
    items: Vec<ConflictItem>,
}

impl Ctx<'_> {
    fn missing(&mut self, key: Key) {
        self.items.push(ConflictItem {
            key,
            kind: ConflictKind::Missing,
            values: vec![],
        });
    }

    fn invalid(&mut self, key: Key, why: impl Into<String>) {
        let values = values_of(self.ls, key);
        self.items.push(ConflictItem {
            key,
            kind: ConflictKind::Invalid(why.into()),
            values,
        });
    }

    fn u64(&self, key: Key) -> Option<u64> {
        self.merged.get(key).and_then(Value::as_u64)
    }

    fn need_u64(&mut self, key: Key) -> Option<u64> {
        let v = self.u64(key);
        if v.is_none() {
            self.missing(key);
        }
        v
    }

    fn format(&mut self) -> Option<PixelFormat> {
        match self.merged.get(Key::ImageFormat) {
            Some(Value::Format(f)) => Some(*f),
            _ => {
                self.missing(Key::ImageFormat);
                None
            }
        }
    }

    fn data_type(&mut self, key: Key, required: bool) -> Option<DataType> {
        match self.merged.get(key) {
            Some(Value::DataType(d)) => Some(*d),
            _ => {
                if required {
                    self.missing(key);
                }
                None
            }
        }
    }

    fn list(&self, key: Key) -> Option<&[u64]> {
        match self.merged.get(key) {
            Some(Value::U64List(l)) => Some(l),
            _ => None,
        }
    }

    /// The merged image parameters (None, with items recorded, if something is missing).
    fn image_params(&mut self) -> Option<ImageParams> {
        let format = self.format();
        let width = self.need_u64(Key::ImageWidth);
        let height = self.need_u64(Key::ImageHeight);
        // The modifier was negotiated before (modifiers::negotiate), image.layout included.
        let modifier = self.modifier;
        let scan = match self.merged.get(Key::ImageScanType) {
            Some(Value::Scan(s)) => *s,
            _ => ScanType::Progressive,
        };
        if let (Some(f), Some(Value::ColorStd(c))) = (format, self.merged.get(Key::ImageColorStd)) {
            if !color_std_fits(f, *c) {
                self.invalid(
                    Key::ImageColorStd,
                    format!("{c} does not describe {f} ({:?} data)", f.info().family),
                );
            }
        }
        let padding = match self.merged.get(Key::ImagePadding) {
            Some(Value::Padding(p)) => *p,
            _ => Padding::default(),
        };
        let mut p = ImageParams::new(
            format?,
            u32::try_from(width?).ok()?,
            u32::try_from(height?).ok()?,
        );
        p.modifier = modifier;
        p.scan = scan;
        p.padding = padding;
        p.pitch_align = self.u64(Key::ImagePitchAlign).unwrap_or(1);
        p.base_align = self.u64(Key::ImageBaseAlign).unwrap_or(1);
        if let Some(l) = self.list(Key::ImagePlaneBaseAlign) {
            let planes = p.format.planes().len();
            if l.len() != planes {
                let why = format!(
                    "{} alignments for the {planes} planes of {}",
                    l.len(),
                    p.format
                );
                self.invalid(Key::ImagePlaneBaseAlign, why);
            } else {
                p.plane_base_align[..planes].copy_from_slice(l);
            }
        }
        p.height_align = self.u64(Key::ImageHeightAlign).unwrap_or(1);
        p.size_align = self.u64(Key::ImageSizeAlign).unwrap_or(1);
        p.min_pitch = self.u64(Key::ImageMinPitch).unwrap_or(0);
        p.min_size = self.u64(Key::ImageMinSize).unwrap_or(0);
        p.exact_pitch = self.u64(Key::ImageExactPitch).unwrap_or(0);
        Some(p)
    }
}

/// Whether device DMA snoops the CPU caches on this architecture (x86: PCI DMA is coherent).
const DMA_COHERENT_PLATFORM: bool = cfg!(any(target_arch = "x86", target_arch = "x86_64"));

/// The GPU outputs before the shared-buffer rules.
struct Gpus {
    /// Per GPU of `gpu_ids`: cached.
    cache: Vec<(GpuId, bool)>,
    /// Per GPU of `gpu_ids`: compression requested.
    compression: Vec<(GpuId, bool)>,
    vidmem: Option<GpuId>,
}

/// Checks the per-GPU keys against `gpu_ids` and computes the per-GPU outputs.
fn gpu_outputs(cx: &mut Ctx<'_>) -> Gpus {
    let ids: &[GpuId] = match cx.merged.get(Key::GpuIds) {
        Some(Value::GpuIds(l)) => l,
        _ => &[],
    };
    let vidmem = match cx.merged.get(Key::VidMemGpu) {
        Some(Value::Gpu(g)) => Some(*g),
        _ => None,
    };
    let flags = |k: Key| match cx.merged.get(k) {
        Some(Value::GpuFlags(l)) => l.as_slice(),
        _ => &[],
    };
    let (cache_in, compression_in) = (flags(Key::GpuCache), flags(Key::GpuCompression));
    let mut bad = Vec::new();
    for (k, l) in [
        (Key::GpuCache, cache_in),
        (Key::GpuCompression, compression_in),
    ] {
        if let Some((g, _)) = l.iter().find(|(g, _)| !ids.contains(g)) {
            bad.push((k, format!("GPU {g} is not in gpu_ids")));
        }
    }
    // A list that asks for a GPU's memory names that GPU among its own.
    for (_, l) in cx.ls {
        if let Some(Value::Gpu(g)) = l.get(Key::VidMemGpu) {
            let own = matches!(l.get(Key::GpuIds), Some(Value::GpuIds(o)) if o.contains(g));
            if !own {
                bad.push((
                    Key::VidMemGpu,
                    format!("a list asks for GPU {g}'s memory without naming it in its gpu_ids"),
                ));
            }
        }
    }
    for (k, why) in bad {
        cx.invalid(k, why);
    }
    let of = |l: &[(GpuId, bool)], g: GpuId, default: bool| {
        l.iter().find(|e| e.0 == g).map_or(default, |e| e.1)
    };
    Gpus {
        // NvSciBuf's defaults: a dGPU caches its own video memory, not system memory. unibuf
        // cannot tell a Tegra iGPU (default: cached) from a UUID; such a list says so itself.
        cache: ids
            .iter()
            .map(|&g| (g, of(cache_in, g, vidmem == Some(g))))
            .collect(),
        compression: ids
            .iter()
            .map(|&g| (g, of(compression_in, g, false)))
            .collect(),
        vidmem,
    }
}

/// Whether a color standard can describe a format's data: Y'CbCr needs a BT.* matrix, RGB is
/// sRGB or BT.709/BT.2020 primaries, Bayer data is raw, grey takes any but raw.
pub(super) fn color_std_fits(f: PixelFormat, c: ColorStd) -> bool {
    use crate::layout::ColorFamily as F;
    match f.info().family {
        F::Yuv => matches!(
            c,
            ColorStd::Bt601 | ColorStd::Bt601Full | ColorStd::Bt709 | ColorStd::Bt2020
        ),
        F::Rgb => matches!(c, ColorStd::Srgb | ColorStd::Bt709 | ColorStd::Bt2020),
        F::Bayer => c == ColorStd::Raw,
        F::Grey => c != ColorStd::Raw,
    }
}

pub(super) fn u64_list(v: impl Iterator<Item = u64>) -> Value {
    Value::U64List(v.collect())
}

/// Validates the merged list and computes the outputs.
pub(super) fn compute(
    merged: AttrList,
    inputs: Vec<AttrList>,
    ls: &[(usize, &AttrList)],
    modifier: u64,
    local_cpu_access: bool,
) -> Result<Reconciled, Conflict> {
    let mut cx = Ctx {
        merged: &merged,
        modifier,
        ls,
        items: Vec::new(),
    };
    let types = match merged.get(Key::Types) {
        Some(Value::Types(t)) => *t,
        _ => {
            cx.missing(Key::Types);
            BufferTypes::EMPTY
        }
    };

    let mut image = None;
    let mut tensor = None;
    let mut array = None;
    let mut pyramid = None;
    let mut size = 0;
    let mut alignment = 1;

    if types.contains(BufferType::RawBuffer) {
        if let Some(s) = cx.need_u64(Key::RawSize) {
            size = s;
            alignment = cx.u64(Key::RawAlign).unwrap_or(1);
        }
    }
    if types.contains(BufferType::Image) && !types.contains(BufferType::Tensor) {
        if let Some(p) = cx.image_params() {
            match ImageLayout::compute(&p) {
                Ok(l) => {
                    size = l.size;
                    alignment = l.alignment;
                    image = Some(l);
                }
                Err(e) => cx.invalid(e.key, e.reason),
            }
        }
    }
    if types.contains(BufferType::Image) && types.contains(BufferType::Tensor) {
        if let Some((i, t)) = image_tensor(&mut cx) {
            size = i.size;
            alignment = t.alignment;
            image = Some(i);
            tensor = Some(t);
        }
    }
    if types.contains(BufferType::Tensor) && !types.contains(BufferType::Image) {
        let dt = cx.data_type(Key::TensorDataType, true);
        let dims = cx.need_u64(Key::TensorNumDims);
        let sizes = cx.list(Key::TensorSizes).map(<[u64]>::to_vec);
        if sizes.is_none() {
            cx.missing(Key::TensorSizes);
        }
        let align = cx.list(Key::TensorAlignPerDim).map(<[u64]>::to_vec);
        let base = cx.u64(Key::TensorBaseAlign).unwrap_or(1);
        if let (Some(dt), Some(dims), Some(sizes)) = (dt, dims, sizes) {
            if sizes.len() as u64 != dims {
                cx.invalid(
                    Key::TensorSizes,
                    format!("{} sizes for {dims} dimensions", sizes.len()),
                );
            } else if align.as_ref().is_some_and(|a| a.len() as u64 != dims) {
                cx.invalid(
                    Key::TensorAlignPerDim,
                    format!("alignments for {dims} dimensions expected"),
                );
            } else {
                match TensorLayout::compute(dt, &sizes, align.as_deref().unwrap_or(&[]), base) {
                    Ok(t) => {
                        size = t.size;
                        alignment = t.alignment;
                        tensor = Some(t);
                    }
                    Err(e) => cx.invalid(e.key, e.reason),
                }
            }
        }
    }
    if types.contains(BufferType::Array) {
        let dt = cx.data_type(Key::ArrayDataType, true);
        let stride = cx.need_u64(Key::ArrayStride);
        let cap = cx.need_u64(Key::ArrayCapacity);
        if let (Some(dt), Some(stride), Some(cap)) = (dt, stride, cap) {
            if stride < dt.size() {
                cx.invalid(
                    Key::ArrayStride,
                    format!("stride {stride} is smaller than a {dt} element"),
                );
            } else if let Some(sz) = stride.checked_mul(cap).filter(|s| *s <= 1 << 52) {
                let a = ArrayLayout {
                    data_type: dt,
                    stride,
                    capacity: cap,
                    size: sz,
                    alignment: dt.size(),
                };
                size = sz;
                alignment = a.alignment;
                array = Some(a);
            } else {
                cx.invalid(Key::ArrayCapacity, "array size overflows");
            }
        }
    }
    if types.contains(BufferType::ImagePyramid) {
        let levels = cx.need_u64(Key::PyramidLevels);
        let scale = match cx.merged.get(Key::PyramidScale) {
            Some(Value::F64(s)) => Some(*s),
            _ => {
                cx.missing(Key::PyramidScale);
                None
            }
        };
        if let (Some(p), Some(levels), Some(scale)) = (cx.image_params(), levels, scale) {
            match PyramidLayout::compute(&p, levels as u32, scale) {
                Ok(py) => {
                    size = py.size;
                    alignment = p.base_align;
                    image = Some(py.levels[0].image.clone());
                    pyramid = Some(py);
                }
                Err(e) => cx.invalid(e.key, e.reason),
            }
        }
    }
    let gpus = gpu_outputs(&mut cx);
    if !cx.items.is_empty() {
        let mut items = cx.items;
        items.sort_by_key(|i| i.key);
        items.dedup_by(|a, b| a.key == b.key && a.kind == b.kind);
        return Err(Conflict { items });
    }

    // General outputs. NvSciBuf ActualPerm: the maximum RequiredPerm, read-only when no list
    // states one (least privilege).
    let permission = match merged.get(Key::RequiredPerm) {
        Some(Value::Permission(p)) => *p,
        _ => Permission::ReadOnly,
    };
    let flag = |k: Key, default: bool| merged.get(k).and_then(Value::as_bool).unwrap_or(default);
    let cpu_access = flag(Key::NeedCpuAccess, false);
    let cpu_cache = cpu_access && flag(Key::EnableCpuCache, true);
    let memory = MemoryRequirement {
        contiguous: flag(Key::PhysContiguous, false),
        pinnable: ls.iter().any(|(_, l)| {
            l.accessor_kind()
                .is_some_and(|k| k.needs_host_memory(gpus.vidmem.is_some()))
        }),
        device_access: ls
            .iter()
            .any(|(_, l)| l.accessor_kind().is_none_or(AccessorKind::imports_dma_buf)),
        preferred: match merged.get(Key::PreferredBackend) {
            Some(Value::Backend(b)) => Some(*b),
            _ => None,
        },
        vidmem: gpus.vidmem,
    };
    // NvSciBuf CpuNeedSwCacheCoherency: cached CPU access shared with a device on a platform
    // whose DMA does not snoop the CPU caches. x86 PCI DMA is cache-coherent; elsewhere (arm64:
    // it depends on each device's `dma-coherent`, which unibuf cannot know) say so
    // conservatively.
    let device = ls
        .iter()
        .any(|(_, l)| l.accessor_kind() != Some(AccessorKind::Cpu));
    let cpu_sw_cache_coherency = cpu_cache && device && !DMA_COHERENT_PLATFORM;
    // NvSciBuf EnableGpuCompression: none when several GPUs, a non-GPU engine or the CPU share
    // the buffer.
    let shared = gpus.cache.len() > 1
        || cpu_access
        || ls
            .iter()
            .any(|(_, l)| l.accessor_kind() != Some(AccessorKind::Gpu));
    let mut gpu_compression = gpus.compression;
    if shared {
        gpu_compression.iter_mut().for_each(|e| e.1 = false);
    }
    let mut accessors: Vec<Accessor> = ls
        .iter()
        .map(|(_, l)| Accessor {
            name: l.accessor_name().map(str::to_string),
            kind: l.accessor_kind(),
        })
        .collect();
    accessors.sort();
    Ok(Reconciled {
        list: merged,
        outputs: OnceLock::new(),
        derived_name: OnceLock::new(),
        inputs,
        accessors,
        types,
        size,
        alignment,
        permission,
        cpu_access,
        local_cpu_access,
        cpu_cache,
        cpu_sw_cache_coherency,
        gpu_cache: gpus.cache,
        gpu_compression,
        memory,
        image,
        tensor,
        array,
        pyramid,
    })
}

impl PartialEq for Reconciled {
    fn eq(&self, o: &Self) -> bool {
        self.list == o.list
            && self.inputs == o.inputs
            && self.accessors == o.accessors
            && self.types == o.types
            && self.size == o.size
            && self.alignment == o.alignment
            && self.permission == o.permission
            && self.cpu_access == o.cpu_access
            && self.cpu_cache == o.cpu_cache
            && self.cpu_sw_cache_coherency == o.cpu_sw_cache_coherency
            && self.gpu_cache == o.gpu_cache
            && self.gpu_compression == o.gpu_compression
            && self.memory == o.memory
            && self.image == o.image
            && self.tensor == o.tensor
            && self.array == o.array
            && self.pyramid == o.pyramid
    }
}

impl Reconciled {
    pub(super) fn outputs(&self) -> &AttrList {
        self.outputs.get_or_init(|| self.build_outputs())
    }

    fn build_outputs(&self) -> AttrList {
        let mut names: Vec<String> = self
            .accessors
            .iter()
            .filter_map(|a| a.name.clone())
            .collect();
        names.sort();
        names.dedup();

        let mut out = AttrList::new();
        out.reserve(24);
        let mut put = |k: Key, v: Value| out.put(k, v);
        put(Key::OutSize, Value::U64(self.size));
        put(Key::OutAlign, Value::U64(self.alignment));
        put(Key::OutPermission, Value::Permission(self.permission));
        put(Key::OutCpuAccess, Value::Bool(self.cpu_access));
        put(Key::OutCpuCache, Value::Bool(self.cpu_cache));
        put(Key::OutContiguous, Value::Bool(self.memory.contiguous));
        put(Key::OutPinnable, Value::Bool(self.memory.pinnable));
        put(Key::OutDeviceAccess, Value::Bool(self.memory.device_access));
        put(Key::OutAccessors, Value::StrList(names));
        if !self.gpu_cache.is_empty() {
            put(Key::OutGpuCache, Value::GpuFlags(self.gpu_cache.clone()));
            put(
                Key::OutGpuCompression,
                Value::GpuFlags(self.gpu_compression.clone()),
            );
        }
        put(
            Key::OutCpuSwCacheCoherency,
            Value::Bool(self.cpu_sw_cache_coherency),
        );
        if let Some(img) = &self.image {
            let pl = &img.planes;
            put(Key::OutPlaneCount, Value::U32(pl.len() as u32));
            put(Key::OutPlanePitch, u64_list(pl.iter().map(|p| p.pitch)));
            put(Key::OutPlaneOffset, u64_list(pl.iter().map(|p| p.offset)));
            put(
                Key::OutPlaneAlignedHeight,
                u64_list(pl.iter().map(|p| p.aligned_height)),
            );
            put(Key::OutPlaneSize, u64_list(pl.iter().map(|p| p.size)));
            put(
                Key::OutPlaneBpp,
                u64_list(pl.iter().map(|p| u64::from(p.bpp))),
            );
            put(
                Key::OutPlaneChannels,
                u64_list(pl.iter().map(|p| u64::from(p.channels))),
            );
            put(
                Key::OutPlaneSecondFieldOffset,
                u64_list(pl.iter().map(|p| p.second_field_offset)),
            );
            put(Key::OutModifier, Value::U64(img.modifier));
        }
        if let Some(t) = &self.tensor {
            put(Key::OutTensorStrides, Value::U64List(t.strides.clone()));
            put(Key::OutTensorSize, Value::U64(t.size));
        }
        if let Some(a) = &self.array {
            put(Key::OutArraySize, Value::U64(a.size));
            put(Key::OutArrayAlign, Value::U64(a.alignment));
        }
        if let Some(py) = &self.pyramid {
            put(
                Key::OutPyramidLevelOffsets,
                u64_list(py.levels.iter().map(|l| l.offset)),
            );
            put(
                Key::OutPyramidLevelSizes,
                u64_list(py.levels.iter().map(|l| l.size)),
            );
        }
        out
    }
}

/// Image + Tensor: an NHWC tensor (N = 1) over a one-plane pitch-linear image.
pub(super) fn image_tensor(cx: &mut Ctx<'_>) -> Option<(ImageLayout, TensorLayout)> {
    let mut p = cx.image_params()?;
    let info = p.format.info();
    if info.planes.len() != 1 || info.component_bits.is_none() {
        cx.invalid(
            Key::ImageFormat,
            format!("{} cannot be viewed as an NHWC tensor (needs one plane of equal byte-sized components)", p.format),
        );
        return None;
    }
    if p.modifier != 0 {
        cx.invalid(
            Key::ImageModifier,
            "an image+tensor buffer must be pitch-linear",
        );
        return None;
    }
    if p.scan != ScanType::Progressive {
        cx.invalid(
            Key::ImageScanType,
            "an image+tensor buffer must be progressive",
        );
        return None;
    }
    let plane = info.planes[0];
    let cbits = u64::from(info.component_bits.unwrap_or(8));
    let dt = cx
        .data_type(Key::TensorDataType, false)
        .unwrap_or(if cbits == 8 {
            DataType::Uint8
        } else {
            DataType::Uint16
        });
    if dt.size() * 8 != cbits {
        cx.invalid(
            Key::TensorDataType,
            format!(
                "{dt} does not match the {cbits}-bit components of {}",
                p.format
            ),
        );
        return None;
    }
    let (pad_w, pad_h) = (
        u64::from(p.padding.left + p.padding.right),
        u64::from(p.padding.top + p.padding.bottom),
    );
    let nhwc = [
        1,
        u64::from(p.height) + pad_h,
        u64::from(p.width) + pad_w,
        u64::from(plane.channels),
    ];
    if let Some(d) = cx.u64(Key::TensorNumDims) {
        if d != 4 {
            cx.invalid(
                Key::TensorNumDims,
                "an image+tensor buffer is NHWC: 4 dimensions",
            );
            return None;
        }
    }
    if let Some(s) = cx.list(Key::TensorSizes) {
        if s != nhwc {
            cx.invalid(
                Key::TensorSizes,
                format!("an image+tensor buffer is NHWC {nhwc:?} here"),
            );
            return None;
        }
    }
    let align = cx.list(Key::TensorAlignPerDim).map(<[u64]>::to_vec);
    if let Some(a) = &align {
        if a.len() != 4 {
            cx.invalid(
                Key::TensorAlignPerDim,
                "an image+tensor buffer is NHWC: 4 alignments",
            );
            return None;
        }
        p.pitch_align = p.pitch_align.max(a[1]);
    }
    p.base_align = p.base_align.max(cx.u64(Key::TensorBaseAlign).unwrap_or(1));
    let img = match ImageLayout::compute(&p) {
        Ok(i) => i,
        Err(e) => {
            cx.invalid(e.key, e.reason);
            return None;
        }
    };
    let pl = img.planes[0];
    let strides = vec![pl.size, pl.pitch, u64::from(plane.bpp) / 8, dt.size()];
    if let Some(a) = &align {
        for (i, (s, al)) in strides.iter().zip(a).enumerate() {
            if s % al != 0 {
                cx.invalid(
                    Key::TensorAlignPerDim,
                    format!("dimension {i} stride {s} of the image is not a multiple of {al}"),
                );
                return None;
            }
        }
    }
    let t = TensorLayout {
        data_type: dt,
        sizes: nhwc.to_vec(),
        strides,
        size: img.size,
        alignment: p.base_align.max(dt.size()),
    };
    Some((img, t))
}
