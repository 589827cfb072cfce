//! Conflicts: what failed to reconcile, which accessors disagreed and with what values.

use crate::attr::{Key, Value};
use std::fmt;

/// What went wrong with one key.
#[derive(Debug, Clone, PartialEq)]
pub enum ConflictKind {
    /// Lists give values that cannot be merged (equal-or-fail keys that differ, lists of
    /// different lengths, an unsupported union of buffer types).
    Disagree,
    /// A key reconciliation needs was set by no list.
    Missing,
    /// The merged values are inconsistent or cannot be laid out; the text says why.
    Invalid(String),
    /// A reconciled list does not satisfy an unreconciled list ([`Reconciled::validate`](super::Reconciled::validate)), or an
    /// imported output differs from the recomputed one ([`Reconciled::from_parts`](super::Reconciled::from_parts)).
    NotSatisfied,
    /// No lists were given.
    NoLists,
}

/// One failing key of a [`Conflict`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictItem {
    /// The key.
    pub key: Key,
    /// What went wrong.
    pub kind: ConflictKind,
    /// The accessors (by name, or `list #N` for an unnamed list) and the values they gave,
    /// sorted by value then accessor.
    pub values: Vec<(String, Value)>,
}

/// Why lists could not be reconciled (or validated). Read-only: inspect it or print it.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub(super) items: Vec<ConflictItem>,
}

impl Conflict {
    /// The failing keys, in key order.
    pub fn items(&self) -> &[ConflictItem] {
        &self.items
    }

    /// The failing keys.
    pub fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.items.iter().map(|i| i.key)
    }

    /// What failed, as the message heads it: `cannot reconcile` when lists disagree (or there
    /// are none), `validation failed` when the merged list misses a key or holds inconsistent
    /// values, `not satisfied` when a reconciled list does not meet a list it is checked
    /// against. (One reconciliation fails at one stage: merging stops before validating.)
    pub fn heading(&self) -> &'static str {
        let any = |f: fn(&ConflictKind) -> bool| self.items.iter().any(|i| f(&i.kind));
        if any(|k| matches!(k, ConflictKind::Disagree | ConflictKind::NoLists)) {
            "cannot reconcile"
        } else if any(|k| matches!(k, ConflictKind::Missing | ConflictKind::Invalid(_))) {
            "validation failed"
        } else {
            "not satisfied"
        }
    }

    pub(super) fn one(key: Key, kind: ConflictKind, values: Vec<(String, Value)>) -> Conflict {
        Conflict {
            items: vec![ConflictItem { key, kind, values }],
        }
    }
}

impl fmt::Display for ConflictItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vals = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            for (i, (who, v)) in self.values.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{who} = {v}")?;
            }
            Ok(())
        };
        match &self.kind {
            ConflictKind::Disagree => {
                write!(f, "{}: lists disagree: ", self.key)?;
                vals(f)
            }
            ConflictKind::Missing => write!(f, "{}: required but set by no list", self.key),
            ConflictKind::Invalid(why) => {
                write!(f, "{}: {why}", self.key)?;
                if !self.values.is_empty() {
                    f.write_str(" (")?;
                    vals(f)?;
                    f.write_str(")")?;
                }
                Ok(())
            }
            ConflictKind::NotSatisfied => {
                write!(f, "{}: not satisfied: ", self.key)?;
                vals(f)
            }
            ConflictKind::NoLists => f.write_str("no attribute lists to reconcile"),
        }
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} key", self.heading(), self.items.len())?;
        if self.items.len() != 1 {
            f.write_str("s")?;
        }
        f.write_str("):")?;
        for i in &self.items {
            write!(f, "\n  {i}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Conflict {}
