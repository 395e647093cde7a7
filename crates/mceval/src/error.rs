//! The crate's error type: every variant names the file, record index, field or value at fault.
use std::path::PathBuf;

/// Errors from loading, validating, rendering, auditing and building MCEval8K data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid JSON (or JSONL / CSV) of the expected shape.
    #[error("{path}: malformed {format}: {message}")]
    Malformed {
        /// The file involved.
        path: PathBuf,
        /// "JSON", "JSONL", "CSV", "CoNLL-U", ...
        format: &'static str,
        /// What is wrong and where (line / column when known).
        message: String,
    },
    /// A data file holds no records.
    #[error("{path}: empty file (no records)")]
    Empty {
        /// The file involved.
        path: PathBuf,
    },
    /// A record lacks a field its task needs.
    #[error("{path}: record {index}: missing field `{field}`")]
    MissingField {
        /// The file involved.
        path: PathBuf,
        /// 0-based record index in the file.
        index: usize,
        /// The field name.
        field: String,
    },
    /// A record's field holds a value the task does not accept (unknown label, wrong type).
    #[error("{path}: record {index}: field `{field}`: {message}")]
    BadValue {
        /// The file involved.
        path: PathBuf,
        /// 0-based record index in the file.
        index: usize,
        /// The field name.
        field: String,
        /// What is wrong with the value.
        message: String,
    },
    /// A task name that is not one of the 22 MCEval8K tasks.
    #[error("unknown task `{name}`; valid tasks: {valid}")]
    UnknownTask {
        /// The name asked for.
        name: String,
        /// Comma-separated list of valid names.
        valid: String,
    },
    /// A split that does not exist for this data set (e.g. the published imdb/chunking train).
    #[error("task `{task}` has no {split} split ({path}); {fix}")]
    MissingSplit {
        /// The task name.
        task: String,
        /// The split name.
        split: String,
        /// Where it was looked for.
        path: String,
        /// How to get one.
        fix: String,
    },
    /// A template set lacks what rendering needs, or is inconsistent with the task.
    #[error("template for task `{task}`: {message}")]
    Template {
        /// The task name.
        task: String,
        /// What is wrong.
        message: String,
    },
    /// An answer token is not a single token for the given tokenizer.
    #[error("answer `{answer}` of task `{task}` is not a single token: {message}")]
    NotSingleToken {
        /// The task name.
        task: String,
        /// The answer token text.
        answer: String,
        /// The tokenizer's result or error.
        message: String,
    },
    /// The Hugging Face hub (or its local cache) could not provide a file.
    #[error("hub dataset {repo} file {file}: {message}")]
    Hub {
        /// The dataset repository id.
        repo: String,
        /// The file inside it.
        file: String,
        /// What went wrong.
        message: String,
    },
    /// Building or re-splitting a task cannot proceed (too few records, bad argument).
    #[error("{task}: {message}")]
    Build {
        /// The task name.
        task: String,
        /// What went wrong.
        message: String,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(
        path: impl Into<PathBuf>,
        format: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Error::Malformed {
            path: path.into(),
            format,
            message: message.into(),
        }
    }
}
