//! Which ENIConfig a node uses (`custom-networking.md`). Pure: labels and annotations in, the
//! name and the rule that chose it out.

mod select;

pub use select::{
    DEFAULT_ENICONFIG, DEFAULT_KEY, EXTERNAL_ENICONFIG_LABEL, Rule, Selection, SelectionKeys,
    select,
};
