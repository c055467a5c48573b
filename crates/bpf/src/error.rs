use std::path::PathBuf;

/// Why a BPF object could not be loaded, attached, pinned or updated.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("loading BPF object {object}: {source}")]
    Load {
        object: &'static str,
        #[source]
        source: Box<aya::EbpfError>,
    },
    #[error("BPF program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("BPF map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("BPF map {0} is missing from the object")]
    MissingMap(&'static str),
    #[error("BPF program {0} is missing from the object")]
    MissingProgram(&'static str),
    #[error("pinning at {path}: {message}")]
    Pin { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel BTF: {0}")]
    Btf(String),
}

impl BpfError {
    pub(crate) fn program(program: &'static str, e: aya::programs::ProgramError) -> Self {
        BpfError::Program {
            program,
            source: Box::new(e),
        }
    }

    pub(crate) fn map(map: &'static str, e: aya::maps::MapError) -> Self {
        BpfError::Map {
            map,
            source: Box::new(e),
        }
    }
}
