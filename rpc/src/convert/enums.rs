//! Enums to and from their wire values. A value this version does not know (or
//! `*_UNSPECIFIED`) is a [`ConvertError::UnknownEnum`] naming the field.

use faasflow_core::dag::{FailureKind, FailureKinds, Isolation, JoinKind, SourceFormat, ValueKind};
use faasflow_core::plan::{Mode, Tier};
use faasflow_proto::v1 as pb;

use super::ConvertError;
use super::error::unknown_enum;

/// The wire value of a scheduling mode (for `DeployRequest.mode`).
pub fn mode_to_proto(mode: Mode) -> i32 {
    match mode {
        Mode::WorkerSp => pb::Mode::WorkerSp as i32,
        Mode::MasterSp => pb::Mode::MasterSp as i32,
        Mode::WorkerSpRemote => pb::Mode::WorkerSpRemote as i32,
    }
}

pub(super) fn format_to_proto(f: SourceFormat) -> i32 {
    match f {
        SourceFormat::Native => pb::SourceFormat::Native as i32,
        SourceFormat::FaasflowFlat => pb::SourceFormat::FaasflowFlat as i32,
        SourceFormat::FaasflowHierarchical => pb::SourceFormat::FaasflowHierarchical as i32,
    }
}

pub(super) fn value_kind_to_proto(k: ValueKind) -> i32 {
    match k {
        ValueKind::Bytes => pb::ValueKind::Bytes as i32,
        ValueKind::Json => pb::ValueKind::Json as i32,
        ValueKind::List => pb::ValueKind::List as i32,
    }
}

pub(super) fn isolation_to_proto(i: Isolation) -> i32 {
    match i {
        Isolation::Thread => pb::Isolation::Thread as i32,
        Isolation::Process => pb::Isolation::Process as i32,
        Isolation::Container => pb::Isolation::Container as i32,
    }
}

pub(super) fn join_kind_to_proto(j: JoinKind) -> i32 {
    match j {
        JoinKind::Parallel => pb::JoinKind::Parallel as i32,
        JoinKind::Collect => pb::JoinKind::Collect as i32,
        JoinKind::Pass => pb::JoinKind::Pass as i32,
        JoinKind::End => pb::JoinKind::End as i32,
    }
}

pub(super) fn tier_to_proto(t: Tier) -> i32 {
    match t {
        Tier::InProcess => pb::Tier::InProcess as i32,
        Tier::SharedMemory => pb::Tier::SharedMemory as i32,
        Tier::Peer => pb::Tier::Peer as i32,
        Tier::Remote => pb::Tier::Remote as i32,
    }
}

/// Decodes a scheduling mode (`Plan.mode`, `DeployRequest.mode`); `field` names it in errors.
pub fn mode_from_proto(value: i32, field: &str) -> Result<Mode, ConvertError> {
    match pb::Mode::try_from(value) {
        Ok(pb::Mode::WorkerSp) => Ok(Mode::WorkerSp),
        Ok(pb::Mode::MasterSp) => Ok(Mode::MasterSp),
        Ok(pb::Mode::WorkerSpRemote) => Ok(Mode::WorkerSpRemote),
        Ok(pb::Mode::Unspecified) | Err(_) => Err(unknown_enum(field.to_owned(), "Mode", value)),
    }
}

pub(super) fn format_from_proto(value: i32) -> Result<SourceFormat, ConvertError> {
    match pb::SourceFormat::try_from(value) {
        Ok(pb::SourceFormat::Native) => Ok(SourceFormat::Native),
        Ok(pb::SourceFormat::FaasflowFlat) => Ok(SourceFormat::FaasflowFlat),
        Ok(pb::SourceFormat::FaasflowHierarchical) => Ok(SourceFormat::FaasflowHierarchical),
        Ok(pb::SourceFormat::Unspecified) | Err(_) => {
            Err(unknown_enum("graph.format".to_owned(), "SourceFormat", value))
        }
    }
}

pub(super) fn value_kind_from_proto(value: i32, at: impl FnOnce() -> String) -> Result<ValueKind, ConvertError> {
    match pb::ValueKind::try_from(value) {
        Ok(pb::ValueKind::Bytes) => Ok(ValueKind::Bytes),
        Ok(pb::ValueKind::Json) => Ok(ValueKind::Json),
        Ok(pb::ValueKind::List) => Ok(ValueKind::List),
        Ok(pb::ValueKind::Unspecified) | Err(_) => Err(unknown_enum(at(), "ValueKind", value)),
    }
}

pub(super) fn isolation_from_proto(value: i32, at: impl FnOnce() -> String) -> Result<Isolation, ConvertError> {
    match pb::Isolation::try_from(value) {
        Ok(pb::Isolation::Thread) => Ok(Isolation::Thread),
        Ok(pb::Isolation::Process) => Ok(Isolation::Process),
        Ok(pb::Isolation::Container) => Ok(Isolation::Container),
        Ok(pb::Isolation::Unspecified) | Err(_) => Err(unknown_enum(at(), "Isolation", value)),
    }
}

/// `retry.on`: empty means every kind.
pub(super) fn failure_kinds_from_proto(values: &[i32], at: impl Fn() -> String) -> Result<FailureKinds, ConvertError> {
    if values.is_empty() {
        return Ok(FailureKinds::ALL);
    }
    let mut kinds = FailureKinds::NONE;
    for &value in values {
        let kind = failure_kind_from_proto(value).ok_or_else(|| unknown_enum(at(), "FailureKind", value))?;
        kinds = kinds.with(kind);
    }
    Ok(kinds)
}

/// A failure kind from the wire; `None` for unspecified or unknown values.
pub(super) fn failure_kind_from_proto(value: i32) -> Option<FailureKind> {
    match pb::FailureKind::try_from(value) {
        Ok(pb::FailureKind::Error) => Some(FailureKind::Error),
        Ok(pb::FailureKind::Panic) => Some(FailureKind::Panic),
        Ok(pb::FailureKind::Crash) => Some(FailureKind::Crash),
        Ok(pb::FailureKind::Timeout) => Some(FailureKind::Timeout),
        Ok(pb::FailureKind::Data) => Some(FailureKind::Data),
        Ok(pb::FailureKind::Unspecified) | Err(_) => None,
    }
}

pub(super) fn failure_kinds_to_proto(kinds: FailureKinds) -> Vec<i32> {
    if kinds == FailureKinds::ALL {
        return Vec::new();
    }
    kinds.kinds().map(failure_kind_to_proto).collect()
}

pub(super) fn failure_kind_to_proto(kind: FailureKind) -> i32 {
    match kind {
        FailureKind::Error => pb::FailureKind::Error as i32,
        FailureKind::Panic => pb::FailureKind::Panic as i32,
        FailureKind::Crash => pb::FailureKind::Crash as i32,
        FailureKind::Timeout => pb::FailureKind::Timeout as i32,
        FailureKind::Data => pb::FailureKind::Data as i32,
    }
}

pub(super) fn join_kind_from_proto(value: i32, at: impl FnOnce() -> String) -> Result<JoinKind, ConvertError> {
    match pb::JoinKind::try_from(value) {
        Ok(pb::JoinKind::Parallel) => Ok(JoinKind::Parallel),
        Ok(pb::JoinKind::Collect) => Ok(JoinKind::Collect),
        Ok(pb::JoinKind::Pass) => Ok(JoinKind::Pass),
        Ok(pb::JoinKind::End) => Ok(JoinKind::End),
        Ok(pb::JoinKind::Unspecified) | Err(_) => Err(unknown_enum(at(), "JoinKind", value)),
    }
}

pub(super) fn tier_from_proto(value: i32, at: impl FnOnce() -> String) -> Result<Tier, ConvertError> {
    match pb::Tier::try_from(value) {
        Ok(pb::Tier::InProcess) => Ok(Tier::InProcess),
        Ok(pb::Tier::SharedMemory) => Ok(Tier::SharedMemory),
        Ok(pb::Tier::Peer) => Ok(Tier::Peer),
        Ok(pb::Tier::Remote) => Ok(Tier::Remote),
        Ok(pb::Tier::Unspecified) | Err(_) => Err(unknown_enum(at(), "Tier", value)),
    }
}
