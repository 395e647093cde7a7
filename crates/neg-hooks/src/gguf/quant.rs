//! ggml tensor types and their dequantization to f32, block by block, as llama.cpp's reference
//! `dequantize_row_*` functions (ggml-quants.c) define them.
//!
//! Written by hand for the reason given in `file.rs`; each type is checked against
//! `gguf.quants.dequantize` of the `gguf` Python package on generated blocks and on the real
//! blocks of SmolLM2's file (tests/gguf_parity.rs).

use half::{bf16, f16};

/// A ggml tensor type this reader knows. Ids are ggml's `enum ggml_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    /// A type ggml has but this reader cannot dequantize (the id and ggml's name).
    Unsupported(u32, &'static str),
}

const QK_K: usize = 256;

impl GgmlType {
    /// The type with ggml id `id`, or `None` for an id ggml does not define.
    pub fn from_id(id: u32) -> Option<Self> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Unsupported(9, "Q8_1"),
            10 => Unsupported(10, "Q2_K"),
            11 => Unsupported(11, "Q3_K"),
            12 => Q4K,
            13 => Q5K,
            14 => Q6K,
            15 => Q8K,
            16 => Unsupported(16, "IQ2_XXS"),
            17 => Unsupported(17, "IQ2_XS"),
            18 => Unsupported(18, "IQ3_XXS"),
            19 => Unsupported(19, "IQ1_S"),
            20 => Unsupported(20, "IQ4_NL"),
            21 => Unsupported(21, "IQ3_S"),
            22 => Unsupported(22, "IQ2_S"),
            23 => Unsupported(23, "IQ4_XS"),
            24 => Unsupported(24, "I8"),
            25 => Unsupported(25, "I16"),
            26 => Unsupported(26, "I32"),
            27 => Unsupported(27, "I64"),
            28 => Unsupported(28, "F64"),
            29 => Unsupported(29, "IQ1_M"),
            30 => BF16,
            34 => Unsupported(34, "TQ1_0"),
            35 => Unsupported(35, "TQ2_0"),
            39 => Unsupported(39, "MXFP4"),
            _ => return None,
        })
    }

    /// ggml's name for the type.
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            BF16 => "BF16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q4K => "Q4_K",
            Q5K => "Q5_K",
            Q6K => "Q6_K",
            Q8K => "Q8_K",
            Unsupported(_, n) => n,
        }
    }

    /// Values per block.
    pub fn block_elements(self) -> u64 {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 => 32,
            Q4K | Q5K | Q6K | Q8K => QK_K as u64,
            Unsupported(id, _) => match id {
                9 | 20 => 32,
                24..=28 => 1,
                39 => 32,
                _ => QK_K as u64,
            },
        }
    }

    /// Bytes per block (ggml's `type_size`).
    pub fn block_bytes(self) -> u64 {
        use GgmlType::*;
        match self {
            F32 => 4,
            F16 | BF16 => 2,
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            Q8_0 => 34,
            Q4K => 144,
            Q5K => 176,
            Q6K => 210,
            Q8K => 292,
            Unsupported(id, _) => match id {
                9 => 36,
                10 => 84,
                11 => 110,
                16 => 66,
                17 => 74,
                18 => 98,
                19 => 50,
                20 => 18,
                21 => 110,
                22 => 82,
                23 => 136,
                24 => 1,
                25 => 2,
                26 => 4,
                27 | 28 => 8,
                29 => 56,
                34 => 54,
                35 => 66,
                39 => 17,
                _ => 1,
            },
        }
    }
}

fn h(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Dequantizes whole blocks of `ty` (`bytes.len()` a multiple of the block size) to f32.
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Result<Vec<f32>, String> {
    let bb = ty.block_bytes() as usize;
    if !bytes.len().is_multiple_of(bb) {
        return Err(format!(
            "{} bytes is not a whole number of {}-byte {} blocks",
            bytes.len(),
            bb,
            ty.name()
        ));
    }
    let n = bytes.len() / bb * ty.block_elements() as usize;
    let mut out = Vec::with_capacity(n);
    let blocks = bytes.chunks_exact(bb);
    match ty {
        GgmlType::F32 => out.extend(blocks.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        GgmlType::F16 => out.extend(blocks.map(|b| h(b, 0))),
        GgmlType::BF16 => out.extend(blocks.map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())),
        GgmlType::Q4_0 => blocks.for_each(|b| q4_0(b, &mut out)),
        GgmlType::Q4_1 => blocks.for_each(|b| q4_1(b, &mut out)),
        GgmlType::Q5_0 => blocks.for_each(|b| q5(b, false, &mut out)),
        GgmlType::Q5_1 => blocks.for_each(|b| q5(b, true, &mut out)),
        GgmlType::Q8_0 => blocks.for_each(|b| {
            let d = h(b, 0);
            out.extend(b[2..34].iter().map(|&q| d * (q as i8) as f32));
        }),
        GgmlType::Q4K => blocks.for_each(|b| q4_k(b, &mut out)),
        GgmlType::Q5K => blocks.for_each(|b| q5_k(b, &mut out)),
        GgmlType::Q6K => blocks.for_each(|b| q6_k(b, &mut out)),
        GgmlType::Q8K => blocks.for_each(|b| {
            let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            out.extend(b[4..4 + QK_K].iter().map(|&q| d * (q as i8) as f32));
        }),
        GgmlType::Unsupported(id, name) => {
            return Err(format!(
                "ggml type {name} (id {id}) is not supported; supported: F32, F16, BF16, Q4_0, \
                 Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, Q8_K"
            ))
        }
    }
    Ok(out)
}

/// `block_q4_0`: f16 d, 16 bytes of nibbles; low nibbles are values 0..16, high ones 16..32.
fn q4_0(b: &[u8], out: &mut Vec<f32>) {
    let d = h(b, 0);
    let qs = &b[2..18];
    out.extend(qs.iter().map(|&q| ((q & 0xF) as i32 - 8) as f32 * d));
    out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
}

/// `block_q4_1`: f16 d, f16 m, 16 bytes of nibbles; x = q * d + m.
fn q4_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (h(b, 0), h(b, 2));
    let qs = &b[4..20];
    out.extend(qs.iter().map(|&q| (q & 0xF) as f32 * d + m));
    out.extend(qs.iter().map(|&q| (q >> 4) as f32 * d + m));
}

/// `block_q5_0` (d, qh[4], qs[16]; x = (q - 16) d) and `block_q5_1` (d, m, qh, qs; x = q d + m).
fn q5(b: &[u8], with_min: bool, out: &mut Vec<f32>) {
    let d = h(b, 0);
    let (m, rest) = if with_min {
        (h(b, 2), &b[4..])
    } else {
        (0.0, &b[2..])
    };
    let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let qs = &rest[4..20];
    let value = |q: u32| {
        if with_min {
            q as f32 * d + m
        } else {
            (q as i32 - 16) as f32 * d
        }
    };
    for (j, &q) in qs.iter().enumerate() {
        let hi = ((qh >> j) << 4) & 0x10;
        out.push(value((q & 0xF) as u32 | hi));
    }
    for (j, &q) in qs.iter().enumerate() {
        let hi = (qh >> (j + 12)) & 0x10;
        out.push(value((q >> 4) as u32 | hi));
    }
}

/// The j-th 6-bit scale and min of a K-quant super-block (`get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((q[j] & 63) as f32, (q[j + 4] & 63) as f32)
    } else {
        (
            ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)) as f32,
            ((q[j + 4] >> 4) | ((q[j] >> 6) << 4)) as f32,
        )
    }
}

/// `block_q4_K`: f16 d, f16 dmin, 12 bytes of packed scales/mins, 128 bytes of nibbles; eight
/// sub-blocks of 32 values, x = d * scale * q - dmin * min.
fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (h(b, 0), h(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (i, q) in qs.chunks_exact(32).enumerate() {
        let (s1, m1) = scale_min_k4(2 * i, scales);
        let (s2, m2) = scale_min_k4(2 * i + 1, scales);
        let (d1, m1, d2, m2) = (d * s1, dmin * m1, d * s2, dmin * m2);
        out.extend(q.iter().map(|&x| d1 * (x & 0xF) as f32 - m1));
        out.extend(q.iter().map(|&x| d2 * (x >> 4) as f32 - m2));
    }
}

/// `block_q5_K`: as Q4_K plus 32 bytes `qh` holding each value's fifth bit.
fn q5_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (h(b, 0), h(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (i, q) in qs.chunks_exact(32).enumerate() {
        let (s1, m1) = scale_min_k4(2 * i, scales);
        let (s2, m2) = scale_min_k4(2 * i + 1, scales);
        let (d1, m1, d2, m2) = (d * s1, dmin * m1, d * s2, dmin * m2);
        let (u1, u2) = (1u8 << (2 * i), 2u8 << (2 * i));
        out.extend(
            q.iter()
                .zip(qh)
                .map(|(&x, &hb)| d1 * ((x & 0xF) + if hb & u1 != 0 { 16 } else { 0 }) as f32 - m1),
        );
        out.extend(
            q.iter()
                .zip(qh)
                .map(|(&x, &hb)| d2 * ((x >> 4) + if hb & u2 != 0 { 16 } else { 0 }) as f32 - m2),
        );
    }
}

/// `block_q6_K`: 128 bytes low nibbles, 64 bytes high 2-bit pairs, 16 i8 scales, f16 d;
/// x = d * scale * (q - 32).
fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let d = h(b, 208);
    let start = out.len();
    out.resize(start + QK_K, 0.0);
    let y = &mut out[start..];
    for half in 0..2 {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[128 + 32 * half..128 + 32 * half + 32];
        let sc = &b[192 + 8 * half..192 + 8 * half + 8];
        let y = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let s = |k: usize| d * (sc[is + k] as i8) as f32;
            y[l] = s(0) * q1 as f32;
            y[l + 32] = s(2) * q2 as f32;
            y[l + 64] = s(4) * q3 as f32;
            y[l + 96] = s(6) * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_block_by_hand() {
        // d = 0.5 (f16 0x3800), nibbles: low 0..16 -> values (j - 8) / 2, high all 15 -> 3.5.
        let mut b = vec![0x00, 0x38];
        b.extend((0..16u8).map(|j| j | 0xF0));
        let v = dequantize(GgmlType::Q4_0, &b).unwrap();
        assert_eq!(v.len(), 32);
        assert_eq!(v[0], -4.0);
        assert_eq!(v[15], 3.5);
        assert!(v[16..].iter().all(|&x| x == 3.5));
    }

    #[test]
    fn partial_blocks_and_unsupported_types_are_errors() {
        assert!(dequantize(GgmlType::Q8_0, &[0u8; 35])
            .unwrap_err()
            .contains("34-byte"));
        let e = dequantize(GgmlType::from_id(10).unwrap(), &[0u8; 84]).unwrap_err();
        assert!(e.contains("Q2_K"), "{e}");
        assert_eq!(GgmlType::from_id(31), None);
    }
}
