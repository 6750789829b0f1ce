//! A YAML value tree in which every node knows its line and column.
//!
//! serde-saphyr parses the text (one call per file, all documents at once) and its `Spanned`
//! wrapper gives each node's position; this module turns that into [`Node`], converts it to
//! JSON for the API server, finds the position of any field by path, and deserializes typed
//! views from a node with errors that carry the field path and position
//! (`spec.http[0].route[0].destination.host: expected a string`).
//!
//! It does not know about Kubernetes; `manifest` builds objects on top of it.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, Error as _, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_saphyr::Spanned;
use serde_saphyr::budget::BudgetBreach;

use super::read::Limits;

/// A 1-based line and column in a source file. `0:0` means unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

impl Pos {
    fn from_location(loc: &serde_saphyr::Location) -> Self {
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Pos {
            line: clamp(loc.line()),
            col: clamp(loc.column()),
        }
    }
}

/// One YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// A mapping key; YAML allows non-string scalar keys, which we keep as their text.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub pos: Pos,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A syntax error in a YAML file, or a limit it went past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
    /// A limit of [`Limits`] was reached: the message says which key raises it.
    pub budget: bool,
}

/// Parses every document of `text`, within `limits`. Empty documents (a stray `---`) are
/// dropped by the parser.
pub fn parse_documents(text: &str, limits: &Limits) -> Result<Vec<Node>, SyntaxError> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = limits.max_documents;
    budget.max_nodes = limits.max_nodes;
    budget.max_depth = limits.max_depth;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    serde_saphyr::from_multiple_with_options::<Node>(text, options).map_err(|e| {
        let pos = e
            .location()
            .map(|l| Pos::from_location(&l))
            .unwrap_or_default();
        if let serde_saphyr::Error::Budget { breach, .. } = e.without_snippet() {
            let (message, pos) = budget_message(breach, limits, pos);
            return SyntaxError {
                pos,
                message,
                budget: true,
            };
        }
        SyntaxError {
            pos,
            message: strip_location_prefix(&e.without_snippet().to_string()),
            budget: false,
        }
    })
}

/// What a user does about a breached budget. Counts over the whole file have no useful
/// position; a depth does.
fn budget_message(breach: &BudgetBreach, limits: &Limits, pos: Pos) -> (String, Pos) {
    let none = Pos::default();
    match breach {
        BudgetBreach::Documents { .. } => (
            format!(
                "more than {} documents (limit `max_documents`): split the file",
                limits.max_documents
            ),
            none,
        ),
        BudgetBreach::Nodes { .. } => (
            format!(
                "more than {} YAML nodes (limit `max_nodes`): split the file",
                limits.max_nodes
            ),
            none,
        ),
        BudgetBreach::Depth { .. } => (
            format!(
                "nested deeper than {} levels (limit `max_depth`)",
                limits.max_depth
            ),
            pos,
        ),
        other => (
            format!(
                "the YAML is too large or too repetitive for the parser's limits ({other:?}): split the file or remove the aliases"
            ),
            pos,
        ),
    }
}

/// serde-saphyr renders `error: line 3 column 2: message`; we print the position ourselves.
fn strip_location_prefix(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or(rendered);
    let rest = first.strip_prefix("error: ").unwrap_or(first);
    match rest.find(": ") {
        Some(i) if rest.starts_with("line ") => rest[i + 2..].to_string(),
        _ => rest.to_string(),
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            pos: Pos::from_location(&spanned.referenced),
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        String::from_utf8(v.to_vec())
            .map(Value::Str)
            .map_err(|_| E::custom("binary data is not UTF-8"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(node) = seq.next_element::<Node>()? {
            items.push(node);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value::<Node>()?;
            entries.push((
                Key {
                    pos: Pos::from_location(&key.referenced),
                    name: key.value.0,
                },
                value,
            ));
        }
        Ok(Value::Map(entries))
    }
}

/// Any scalar key as text (`80: x` has the key "80").
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".into()))
            }
        }
        // Asking for a string keeps plain keys as written: `n:` and `on:` are names in
        // Kubernetes objects, not booleans.
        d.deserialize_string(KeyVisitor)
    }
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Renders a path the way people write it: `spec.http[0].route[1].destination.host`.
pub fn path_string(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The position of the key `key` in this mapping (where a person looks for the field).
    pub fn key_pos(&self, key: &str) -> Option<Pos> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.name == key)
                .map(|(k, _)| k.pos),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Follows a dotted path (`metadata.name`); see [`Node::at_path`].
    pub fn at(&self, dotted: &str) -> Option<&Node> {
        dotted.split('.').try_fold(self, |node, key| node.get(key))
    }

    pub fn at_path(&self, path: &[Seg]) -> Option<&Node> {
        path.iter()
            .try_fold(self, |node, seg| match (seg, &node.value) {
                (Seg::Key(k), _) => node.get(k),
                (Seg::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            })
    }

    /// The best position for a field path: the key of the last mapping step that exists, so a
    /// finding about `spec.hosts` points at `hosts:`, and one about a missing field points at
    /// the nearest parent that exists.
    pub fn locate(&self, path: &[Seg]) -> Pos {
        let mut node = self;
        let mut best = self.pos;
        for seg in path {
            let next = match (seg, &node.value) {
                (Seg::Key(k), Value::Map(entries)) => entries
                    .iter()
                    .find(|(key, _)| &key.name == k)
                    .map(|(key, v)| (key.pos, v)),
                (Seg::Index(i), Value::Seq(items)) => items.get(*i).map(|v| (v.pos, v)),
                _ => None,
            };
            match next {
                Some((pos, child)) => {
                    best = pos;
                    node = child;
                }
                None => break,
            }
        }
        best
    }

    pub fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The JSON the API server receives. Duplicate keys are rejected by the parser already.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// A typed view field that also records where it was written. Deserializes only from a
/// [`Node`] (through [`from_node`]); elsewhere its position is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Loc<T> {
    pub pos: Pos,
    pub value: T,
}

impl<T> std::ops::Deref for Loc<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

const LOC_MARKER: &str = "__meshloop_loc";
const LOC_FIELDS: &[&str] = &["line", "col", "value"];

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Loc<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LocVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for LocVisitor<T> {
            type Value = Loc<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a located value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loc<T>, A::Error> {
                let mut line = 0u32;
                let mut col = 0u32;
                let mut value = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "line" => line = map.next_value()?,
                        "col" => col = map.next_value()?,
                        _ => value = Some(map.next_value()?),
                    }
                }
                let value = value.ok_or_else(|| de::Error::missing_field("value"))?;
                Ok(Loc {
                    pos: Pos { line, col },
                    value,
                })
            }
        }
        d.deserialize_struct(LOC_MARKER, LOC_FIELDS, LocVisitor(std::marker::PhantomData))
    }
}

/// Why a typed view could not be read from a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewError {
    pub pos: Pos,
    pub path: Vec<Seg>,
    pub message: String,
}

impl fmt::Display for ViewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", path_string(&self.path), self.message)
        }
    }
}

impl std::error::Error for ViewError {}

/// The error inside the deserializer: the position is filled in by the innermost node that
/// sees it, so a message raised by a visitor (`missing field`) still gets a place.
#[derive(Debug)]
struct DeError {
    located: Option<(Pos, Vec<Seg>)>,
    message: String,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            located: None,
            message: msg.to_string(),
        }
    }
}

/// Reads a typed view from a node; the path is the node's own path inside its document, used
/// as the prefix of error paths.
pub fn from_node<T: DeserializeOwned>(node: &Node, path: &[Seg]) -> Result<T, ViewError> {
    T::deserialize(NodeDe {
        node,
        place: Place::Root(path),
    })
    .map_err(|e| {
        let (pos, path) = e.located.unwrap_or((node.pos, path.to_vec()));
        ViewError {
            pos,
            path,
            message: e.message,
        }
    })
}

/// Where a node sits in its document: the path given to [`from_node`], then one step per
/// level, each borrowed from the level above. Rendered as a [`Seg`] path only for an error,
/// so reading a view allocates nothing for paths.
#[derive(Clone, Copy)]
enum Place<'p> {
    Root(&'p [Seg]),
    Key(&'p Place<'p>, &'p str),
    Index(&'p Place<'p>, usize),
}

impl Place<'_> {
    fn to_path(self) -> Vec<Seg> {
        match self {
            Place::Root(path) => path.to_vec(),
            Place::Key(parent, key) => {
                let mut path = parent.to_path();
                path.push(Seg::Key(key.to_string()));
                path
            }
            Place::Index(parent, i) => {
                let mut path = parent.to_path();
                path.push(Seg::Index(i));
                path
            }
        }
    }
}

struct NodeDe<'a, 'p> {
    node: &'a Node,
    place: Place<'p>,
}

impl<'a, 'p> NodeDe<'a, 'p> {
    fn at(&self, e: DeError) -> DeError {
        if e.located.is_some() {
            return e;
        }
        DeError {
            located: Some((self.node.pos, self.place.to_path())),
            message: e.message,
        }
    }

    fn expected(&self, what: &str) -> DeError {
        let found = match &self.node.value {
            Value::Str(s) => format!("the string {s:?}"),
            Value::Int(i) => format!("the integer {i}"),
            _ => self.node.kind_name().to_string(),
        };
        self.at(DeError::custom(format!("expected {what}, found {found}")))
    }

    fn key<'q>(&'q self, key: &'q str, node: &'a Node) -> NodeDe<'a, 'q> {
        NodeDe {
            node,
            place: Place::Key(&self.place, key),
        }
    }

    fn index<'q>(&'q self, i: usize, node: &'a Node) -> NodeDe<'a, 'q> {
        NodeDe {
            node,
            place: Place::Index(&self.place, i),
        }
    }
}

macro_rules! forward_typed {
    ($($method:ident => $what:expr),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.typed(visitor, $what)
        })*
    };
}

impl NodeDe<'_, '_> {
    /// Scalars are passed through as they are; the visitor's own type check produces the
    /// message, which we rewrite into "expected X, found Y" with the node's position.
    fn typed<'de, V: Visitor<'de>>(self, visitor: V, what: &str) -> Result<V::Value, DeError> {
        let ok = matches!(
            (&self.node.value, what),
            (Value::Str(_), "a string")
                | (Value::Bool(_), "a boolean")
                | (Value::Int(_), "an integer")
                | (Value::Int(_) | Value::Float(_), "a number")
        );
        if !ok {
            return Err(self.expected(what));
        }
        self.any(visitor)
    }

    fn any<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqDe {
                parent: &self,
                items: items.iter().enumerate(),
            }),
            Value::Map(entries) => visitor.visit_map(MapDe {
                parent: &self,
                entries: entries.iter(),
                pending: None,
            }),
        };
        r.map_err(|e| self.at(e))
    }
}

impl<'de> Deserializer<'de> for NodeDe<'_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.any(visitor)
    }

    forward_typed! {
        deserialize_bool => "a boolean",
        deserialize_i8 => "an integer",
        deserialize_i16 => "an integer",
        deserialize_i32 => "an integer",
        deserialize_i64 => "an integer",
        deserialize_u8 => "an integer",
        deserialize_u16 => "an integer",
        deserialize_u32 => "an integer",
        deserialize_u64 => "an integer",
        deserialize_f32 => "a number",
        deserialize_f64 => "a number",
        deserialize_char => "a string",
        deserialize_str => "a string",
        deserialize_string => "a string",
        deserialize_identifier => "a string",
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Seq(_) => self.any(visitor),
            _ => Err(self.expected("a list")),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Map(_) => self.any(visitor),
            _ => Err(self.expected("a mapping")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == LOC_MARKER {
            return visitor.visit_map(LocDe {
                de: Some(self),
                step: 0,
            });
        }
        let _ = fields;
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Str(s) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DeError| self.at(e)),
            _ => Err(self.expected("a string")),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.any(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i128 u128 bytes byte_buf unit_struct newtype_struct tuple tuple_struct
    }
}

impl de::Error for ViewError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ViewError {
            pos: Pos::default(),
            path: Vec::new(),
            message: msg.to_string(),
        }
    }
}

struct SeqDe<'q, 'a, 'p, I> {
    parent: &'q NodeDe<'a, 'p>,
    items: I,
}

impl<'de, 'a, I: Iterator<Item = (usize, &'a Node)>> SeqAccess<'de> for SeqDe<'_, 'a, '_, I> {
    type Error = DeError;
    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some((i, node)) => seed.deserialize(self.parent.index(i, node)).map(Some),
            None => Ok(None),
        }
    }
}

struct MapDe<'q, 'a, 'p, I> {
    parent: &'q NodeDe<'a, 'p>,
    entries: I,
    pending: Option<(&'a Key, &'a Node)>,
}

impl<'de, 'a, I: Iterator<Item = &'a (Key, Node)>> MapAccess<'de> for MapDe<'_, 'a, '_, I> {
    type Error = DeError;
    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, node)) => {
                self.pending = Some((key, node));
                // A rejected key (unknown field) is reported at the key, under its parent.
                seed.deserialize(key.name.as_str().into_deserializer())
                    .map(Some)
                    .map_err(|e: DeError| DeError {
                        located: e
                            .located
                            .or_else(|| Some((key.pos, self.parent.place.to_path()))),
                        message: e.message,
                    })
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DeError> {
        let (key, node) = self
            .pending
            .take()
            .ok_or_else(|| DeError::custom("value requested before key"))?;
        seed.deserialize(self.parent.key(&key.name, node))
    }
}

/// Presents a node as `{line, col, value}` to [`Loc`]'s visitor.
struct LocDe<'a, 'p> {
    de: Option<NodeDe<'a, 'p>>,
    step: u8,
}

impl<'de> MapAccess<'de> for LocDe<'_, '_> {
    type Error = DeError;
    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let key = match self.step {
            0 => "line",
            1 => "col",
            2 => "value",
            _ => return Ok(None),
        };
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DeError> {
        let step = self.step;
        self.step += 1;
        let de = self
            .de
            .as_ref()
            .ok_or_else(|| DeError::custom("located value read twice"))?;
        match step {
            0 => seed.deserialize(de.node.pos.line.into_deserializer()),
            1 => seed.deserialize(de.node.pos.col.into_deserializer()),
            _ => {
                let de = self
                    .de
                    .take()
                    .ok_or_else(|| DeError::custom("located value read twice"))?;
                seed.deserialize(de)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_documents_default(text: &str) -> Result<Vec<Node>, SyntaxError> {
        parse_documents(text, &Limits::default())
    }

    #[test]
    fn budgets_name_the_limit_and_what_to_do() {
        let text = "a: 1\n---\n".repeat(1025);
        let e = parse_documents_default(&text).unwrap_err();
        assert!(e.budget);
        assert_eq!(
            e.message,
            "more than 1024 documents (limit `max_documents`): split the file"
        );
        let limits = Limits {
            max_documents: 2000,
            max_depth: 3,
            ..Limits::default()
        };
        assert_eq!(parse_documents(&text, &limits).unwrap().len(), 1025);
        let e = parse_documents("a: {b: {c: {d: 1}}}\n", &limits).unwrap_err();
        assert_eq!(e.message, "nested deeper than 3 levels (limit `max_depth`)");
    }

    #[test]
    fn positions_are_absolute_across_documents() {
        let docs = parse_documents_default("a: 1\n---\nkind: X\nspec:\n  port: 80\n").unwrap();
        assert_eq!(docs.len(), 2);
        let port = docs[1].at("spec.port").unwrap();
        assert_eq!(port.pos, Pos { line: 5, col: 9 });
        assert_eq!(docs[1].key_pos("spec"), Some(Pos { line: 4, col: 1 }));
    }

    #[test]
    fn syntax_error_has_position_and_bare_message() {
        let err = parse_documents_default("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert_eq!(err.pos.line, 3);
        assert!(!err.message.starts_with("line"), "{}", err.message);
    }

    #[test]
    fn duplicate_keys_are_a_syntax_error() {
        let err = parse_documents_default("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.pos.line, 2);
        assert!(err.message.contains("duplicate"), "{}", err.message);
    }

    #[test]
    fn json_conversion_keeps_types() {
        let doc = &parse_documents_default("p: 80\ns: \"80\"\nb: true\nf: 1.5\nn: ~\nl: [x]\n")
            .unwrap()[0];
        assert_eq!(
            doc.to_json(),
            serde_json::json!({"p": 80, "s": "80", "b": true, "f": 1.5, "n": null, "l": ["x"]})
        );
    }

    #[derive(Debug, Deserialize)]
    struct Dest {
        host: Loc<String>,
        #[serde(default)]
        port: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    struct Route {
        destination: Dest,
    }

    #[test]
    fn typed_view_error_names_path_and_position() {
        let doc =
            &parse_documents_default("spec:\n  route:\n    - destination:\n        host: [a]\n")
                .unwrap()[0];
        let route = doc.at("spec.route").unwrap();
        let err =
            from_node::<Vec<Route>>(route, &[Seg::Key("spec".into()), Seg::Key("route".into())])
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.route[0].destination.host: expected a string, found a list"
        );
        assert_eq!(err.pos, Pos { line: 4, col: 15 });
    }

    #[test]
    fn typed_view_records_field_positions() {
        let doc =
            &parse_documents_default("destination:\n  host: goapp\n  port: 8080\n").unwrap()[0];
        let route: Route = from_node(doc, &[]).unwrap();
        assert_eq!(route.destination.host.value, "goapp");
        assert_eq!(route.destination.host.pos, Pos { line: 2, col: 9 });
        assert_eq!(route.destination.port, Some(8080));
    }

    #[test]
    fn missing_field_points_at_the_parent_mapping() {
        let doc = &parse_documents_default("destination:\n  port: 1\n").unwrap()[0];
        let err = from_node::<Route>(doc, &[]).unwrap_err();
        assert_eq!(err.to_string(), "destination: missing field `host`");
        assert_eq!(err.pos.line, 2);
    }

    #[test]
    fn locate_falls_back_to_nearest_existing_parent() {
        let doc = &parse_documents_default("spec:\n  hosts: [a]\n").unwrap()[0];
        let p = doc.locate(&[Seg::Key("spec".into()), Seg::Key("gateways".into())]);
        assert_eq!(p, Pos { line: 1, col: 1 });
        let p = doc.locate(&[
            Seg::Key("spec".into()),
            Seg::Key("hosts".into()),
            Seg::Index(0),
        ]);
        assert_eq!(p, Pos { line: 2, col: 11 });
    }
}
