//! Why a plan, or a part of one, from the wire was refused ([`ConvertError`]), and the small
//! helpers the decoders build it with.

/// Why a `faasflow.v1.Plan` (or one of its parts) was rejected.
///
/// Fields are named as in the `.proto` files, with indices: `graph.nodes[3].scope`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// A required message, or a `oneof` that must have one member, is not set.
    #[error("`{field}` is missing")]
    Missing {
        /// The field.
        field: String,
    },
    /// An enum field holds a value this version does not know (or `*_UNSPECIFIED`).
    #[error(
        "`{field}` is {value}, which is not a known {enum_name} (0 means the sender left it unset; larger values may come from a newer peer)"
    )]
    UnknownEnum {
        /// The field.
        field: String,
        /// The proto enum's name.
        enum_name: &'static str,
        /// The value received.
        value: i32,
    },
    /// An index points past the end of the list it refers to.
    #[error("`{field}` is {index}, but there are only {len} {what}")]
    IndexOutOfRange {
        /// The field holding the index.
        field: String,
        /// The index received.
        index: u32,
        /// The length of the list it indexes.
        len: usize,
        /// What the list holds (`nodes`, `edges`, `groups`, `workers`).
        what: &'static str,
    },
    /// A table that needs one entry per node (or edge) has another length.
    #[error("`{field}` has {len} entries, but it needs one per {what} and the graph has {expected}")]
    LengthMismatch {
        /// The table.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The length it must have.
        expected: usize,
        /// What it needs one entry for (`node`, `edge`).
        what: &'static str,
    },
    /// A list is too long to be indexed by `u32`.
    #[error("`{field}` has {len} entries, more than the {max} a plan can index")]
    TooMany {
        /// The list.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The most it may have.
        max: usize,
    },
    /// A group's id is not its position in `groups`.
    #[error("`groups[{index}].id` is {id}; a group's id must be its position in `groups` ({index})")]
    GroupId {
        /// The group's position.
        index: usize,
        /// The id received.
        id: u32,
    },
    /// A node is listed in two groups.
    #[error(
        "node {node} is listed in both `groups[{first}].nodes` and `groups[{second}].nodes`; every node must be in exactly one group"
    )]
    NodeInSeveralGroups {
        /// The node.
        node: u32,
        /// The first group listing it.
        first: u32,
        /// The second group listing it.
        second: u32,
    },
    /// A node is listed in no group.
    #[error(
        "node {node} is not listed in any group's `nodes` (`node_group[{node}]` is {node_group}); every node must be in exactly one group"
    )]
    NodeInNoGroup {
        /// The node.
        node: u32,
        /// Its entry in `node_group`.
        node_group: u32,
    },
    /// `node_group` and the groups' node lists disagree.
    #[error("`node_group[{node}]` is {node_group}, but node {node} is listed in `groups[{group}].nodes`")]
    GroupMismatch {
        /// The node.
        node: u32,
        /// Its entry in `node_group`.
        node_group: u32,
        /// The group that lists it.
        group: u32,
    },
    /// The edges form a cycle.
    #[error("`graph.edges` form a cycle through nodes {nodes:?}; a workflow graph must be acyclic")]
    Cycle {
        /// The nodes of one cycle, in order.
        nodes: Vec<u32>,
    },
    /// A reference that must name a foreach node names another kind of node.
    #[error("`{field}` is node {node}, a {kind} node; it must be a foreach node")]
    NotAForeach {
        /// The field.
        field: String,
        /// The node it names.
        node: u32,
        /// That node's kind.
        kind: &'static str,
    },
    /// A foreach's collect node is not a join node.
    #[error("`{field}` is node {node}, a {kind} node; a foreach's collect node must be a join node")]
    CollectNotJoin {
        /// The field.
        field: String,
        /// The node it names.
        node: u32,
        /// That node's kind.
        kind: &'static str,
    },
    /// An edge's case is larger than its switch's default case.
    #[error(
        "`{field}` is {case}, but its source, node {switch}, is a switch with {cases} case(s); the case must be at most {cases} (the default)"
    )]
    CaseOutOfRange {
        /// The field.
        field: String,
        /// The case received.
        case: u32,
        /// The switch node.
        switch: u32,
        /// The switch's number of conditions.
        cases: usize,
    },
    /// An edge has a case, but its source is not a switch.
    #[error("`{field}` is set, but its source, node {node}, is a {kind} node; only edges leaving a switch have a case")]
    CaseWithoutSwitch {
        /// The field.
        field: String,
        /// The source node.
        node: u32,
        /// Its kind.
        kind: &'static str,
    },
    /// Following `scope` from a node comes back to it: a foreach inside itself.
    #[error("following `scope` from node {node} comes back to it; a foreach cannot be inside itself")]
    ScopeCycle {
        /// A node on the cycle.
        node: u32,
    },
    /// A number is not finite, or outside its range.
    #[error("`{field}` is {value}; it must be {range}")]
    InvalidNumber {
        /// The field.
        field: String,
        /// The value received.
        value: f64,
        /// The values allowed.
        range: &'static str,
    },
    /// Two nodes (or workers) have the same name.
    #[error("`{field}` repeats the name `{name}` of `{first}`; names must be unique")]
    DuplicateName {
        /// The field with the second occurrence.
        field: String,
        /// The name.
        name: String,
        /// The field with the first occurrence.
        first: String,
    },
    /// The plan's workflow name differs from its graph's.
    #[error("`workflow` is `{plan}`, but `graph.name` is `{graph}`; they must be equal")]
    NameMismatch {
        /// `workflow`.
        plan: String,
        /// `graph.name`.
        graph: String,
    },
    /// A field's value is not acceptable (an empty name, JSON that does not parse, an object
    /// of another invocation).
    #[error("`{field}` {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

pub(super) fn non_negative(value: f64, at: impl FnOnce() -> String) -> Result<f64, ConvertError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(ConvertError::InvalidNumber {
            field: at(),
            value,
            range: "a finite number ≥ 0",
        })
    }
}

pub(super) fn missing(field: &str) -> ConvertError {
    ConvertError::Missing {
        field: field.to_owned(),
    }
}

pub(super) fn unknown_enum(field: String, enum_name: &'static str, value: i32) -> ConvertError {
    ConvertError::UnknownEnum {
        field,
        enum_name,
        value,
    }
}
