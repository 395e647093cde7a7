//! A minimal GGUF writer for the bad-input and fuzz tests: metadata values and raw tensors,
//! laid out as the format says (v3, alignment 32). Shared by `crates/neg-hooks/tests/gguf.rs`
//! and the workspace's `tests/fuzz.rs`.
#![allow(dead_code)]
pub enum V {
    U32(u32),
    F32(f32),
    Str(&'static str),
    Strs(Vec<String>),
    /// An array whose claimed length is a lie (for the allocation test).
    HugeArray,
}

pub struct Gguf {
    pub magic: [u8; 4],
    pub version: u32,
    pub kv: Vec<(&'static str, V)>,
    /// name, ggml dims (innermost first), type id, bytes
    pub tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

fn s(out: &mut Vec<u8>, x: &str) {
    out.extend((x.len() as u64).to_le_bytes());
    out.extend(x.as_bytes());
}

impl Gguf {
    pub fn bytes(&self) -> Vec<u8> {
        let mut o = Vec::new();
        o.extend(self.magic);
        o.extend(self.version.to_le_bytes());
        o.extend((self.tensors.len() as u64).to_le_bytes());
        o.extend((self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            s(&mut o, k);
            match v {
                V::U32(x) => {
                    o.extend(4u32.to_le_bytes());
                    o.extend(x.to_le_bytes());
                }
                V::F32(x) => {
                    o.extend(6u32.to_le_bytes());
                    o.extend(x.to_le_bytes());
                }
                V::Str(x) => {
                    o.extend(8u32.to_le_bytes());
                    s(&mut o, x);
                }
                V::Strs(xs) => {
                    o.extend(9u32.to_le_bytes());
                    o.extend(8u32.to_le_bytes());
                    o.extend((xs.len() as u64).to_le_bytes());
                    xs.iter().for_each(|x| s(&mut o, x));
                }
                V::HugeArray => {
                    o.extend(9u32.to_le_bytes());
                    o.extend(4u32.to_le_bytes());
                    o.extend(u64::MAX.to_le_bytes());
                }
            }
        }
        let mut offset = 0u64;
        for (name, dims, ty, data) in &self.tensors {
            s(&mut o, name);
            o.extend((dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| o.extend(d.to_le_bytes()));
            o.extend(ty.to_le_bytes());
            o.extend(offset.to_le_bytes());
            offset += (data.len() as u64).div_ceil(32) * 32;
        }
        while o.len() % 32 != 0 {
            o.push(0);
        }
        for (_, _, _, data) in &self.tensors {
            o.extend(data);
            while o.len() % 32 != 0 {
                o.push(0);
            }
        }
        o
    }
}

fn f32s(n: u64, seed: u32) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            ((((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 5000.0 - 0.1)
                .to_le_bytes()
        })
        .collect()
}

/// A valid one-layer Llama (hidden 64, FF 32, 2 heads, 1 KV head, a byte-level vocabulary of
/// 260 tokens) in F32.
pub fn tiny_llama() -> Gguf {
    let (h, ff, vocab) = (64u64, 32u64, 260u64);
    let mut tokens: Vec<String> = (0..256u32)
        .map(|b| {
            let c = match b {
                33..=126 | 161..=172 | 174..=255 => char::from_u32(b).unwrap(),
                _ => char::from_u32(
                    256 + [0..33, 127..161, 173..174]
                        .iter()
                        .flat_map(|r| r.clone())
                        .position(|x| x == b)
                        .unwrap() as u32,
                )
                .unwrap(),
            };
            c.to_string()
        })
        .collect();
    tokens.extend(["Ġt", "he", "Ġthe", "<|endoftext|>"].map(String::from));
    let t = |name: &str, dims: Vec<u64>, seed: u32| {
        let n = dims.iter().product();
        (name.to_string(), dims, 0u32, f32s(n, seed))
    };
    let tensors = vec![
        t("token_embd.weight", vec![h, vocab], 1),
        t("output_norm.weight", vec![h], 2),
        t("blk.0.attn_norm.weight", vec![h], 3),
        t("blk.0.ffn_norm.weight", vec![h], 4),
        t("blk.0.attn_q.weight", vec![h, h], 5),
        t("blk.0.attn_k.weight", vec![h, h / 2], 6),
        t("blk.0.attn_v.weight", vec![h, h / 2], 7),
        t("blk.0.attn_output.weight", vec![h, h], 8),
        t("blk.0.ffn_gate.weight", vec![h, ff], 9),
        t("blk.0.ffn_up.weight", vec![h, ff], 10),
        t("blk.0.ffn_down.weight", vec![ff, h], 11),
    ];
    Gguf {
        magic: *b"GGUF",
        version: 3,
        kv: vec![
            ("general.architecture", V::Str("llama")),
            ("llama.block_count", V::U32(1)),
            ("llama.context_length", V::U32(64)),
            ("llama.embedding_length", V::U32(h as u32)),
            ("llama.feed_forward_length", V::U32(ff as u32)),
            ("llama.attention.head_count", V::U32(2)),
            ("llama.attention.head_count_kv", V::U32(1)),
            ("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5)),
            ("tokenizer.ggml.model", V::Str("gpt2")),
            ("tokenizer.ggml.pre", V::Str("gpt-2")),
            ("tokenizer.ggml.tokens", V::Strs(tokens)),
            (
                "tokenizer.ggml.merges",
                V::Strs(vec!["Ġ t".into(), "h e".into(), "Ġt he".into()]),
            ),
            ("tokenizer.ggml.eos_token_id", V::U32(259)),
        ],
        tensors,
    }
}
