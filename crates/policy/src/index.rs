//! Lookup structures behind the decision function: hash maps keyed by path, directory, name,
//! so a decision costs a handful of lookups whatever the number of rules.

use std::hash::Hash;

use rustc_hash::FxHashMap;

use crate::model::PathTarget;

/// Rules stored at one key: those for every source, and those scoped by `fromSource`.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    global: Vec<u32>,
    by_source: FxHashMap<Box<str>, Vec<u32>>,
}

impl Slot {
    fn push(&mut self, source: Option<&str>, id: u32) {
        match source {
            None => self.global.push(id),
            Some(s) => self.by_source.entry(s.into()).or_default().push(id),
        }
    }

    /// Rules for exactly this source (`Some`), or the global ones (`None`).
    pub(crate) fn get(&self, source: Option<&str>) -> &[u32] {
        match source {
            None => &self.global,
            Some(s) => self.by_source.get(s).map_or(&[], Vec::as_slice),
        }
    }
}

/// A directory in the walk. Nodes without rules are hints: they exist so that the walk from
/// `/` downwards can stop at the first directory that has nothing at or below it.
#[derive(Debug, Default)]
struct DirNode {
    direct: Slot,
    recursive: Slot,
    /// Patterns whose literal part ends in this directory (patterns carry no fromSource).
    patterns: Vec<u32>,
}

/// How a directory on the walk relates to the path being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    /// The path itself is this directory (a directory rule also governs the directory).
    Itself,
    /// The path is directly inside this directory.
    Parent,
    /// The path is deeper below this directory.
    Ancestor,
}

/// Process or file rules of one kind (enforced or audited), indexed for lookup.
#[derive(Debug, Default)]
pub(crate) struct PathIndex {
    exact: FxHashMap<Box<str>, Slot>,
    execname: FxHashMap<Box<str>, Slot>,
    /// Directories other than the root, without their trailing `/`.
    dirs: FxHashMap<Box<str>, DirNode>,
    /// The root, kept out of `dirs`: its key would be an empty `Box<str>`, whose pointer is
    /// dangling, and every comparison against it (one per lookup of the root, i.e. per
    /// decision) sends glibc's AVX-512 `memcmp` into a ~150 ns fault-suppression assist on
    /// some CPUs. Present iff any directory node exists (every node creates it as a hint).
    root: Option<DirNode>,
}

/// A glob test for a pattern rule id.
pub(crate) type PatternTest<'a> = &'a dyn Fn(u32, &str) -> bool;

impl PathIndex {
    /// Adds rule `id` under `target` (and under `alias`, the target's symlink-resolved form).
    pub(crate) fn insert(
        &mut self,
        target: &PathTarget,
        alias: Option<&str>,
        source: Option<&str>,
        id: u32,
    ) {
        match target {
            PathTarget::Path(p) => {
                self.exact
                    .entry(p.as_str().into())
                    .or_default()
                    .push(source, id);
                if let Some(a) = alias {
                    self.exact.entry(a.into()).or_default().push(source, id);
                }
            }
            PathTarget::ExecName(n) => self
                .execname
                .entry(n.as_str().into())
                .or_default()
                .push(source, id),
            PathTarget::Dir { dir, recursive } => {
                for d in std::iter::once(dir.as_str()).chain(alias) {
                    let node = self.dir_node(d);
                    if *recursive {
                        node.recursive.push(source, id);
                    } else {
                        node.direct.push(source, id);
                    }
                }
            }
            PathTarget::Pattern(g) => {
                // `alias` is the literal directory of the pattern's resolved form.
                for d in std::iter::once(g.literal_dir()).chain(alias.map(str::to_string)) {
                    let node = self.dir_node(&d);
                    if !node.patterns.contains(&id) {
                        node.patterns.push(id);
                    }
                }
            }
        }
    }

    /// The node for `dir` (no trailing `/`; the root is ``), creating hint nodes above it.
    fn dir_node(&mut self, dir: &str) -> &mut DirNode {
        let root = self.root.get_or_insert_with(DirNode::default);
        if dir.is_empty() {
            return root;
        }
        for (i, _) in dir.match_indices('/').skip(1) {
            self.dirs.entry(dir[..i].into()).or_default();
        }
        self.dirs.entry(dir.into()).or_default()
    }

    /// Visits candidate rule groups for `path` from most to least specific, until `visit`
    /// returns true:
    /// exact path with source, execname with source, directories with source (deepest first),
    /// exact path, execname, patterns (deepest first), directories (deepest first).
    /// `visit` gets one or two groups that rank equally (a directory's direct and recursive
    /// rules).
    pub(crate) fn walk(
        &self,
        path: &str,
        source: Option<&str>,
        pattern_test: PatternTest<'_>,
        visit: &mut dyn FnMut(&[u32], &[u32]) -> bool,
    ) -> bool {
        let exact = self.exact.get(path);
        let base = path.rsplit('/').next().unwrap_or(path);
        let exec = self.execname.get(base);
        let mut inline = [None; INLINE_DEPTH];
        let mut spill = Vec::new();
        let nodes = self.dir_walk(path, &mut inline, &mut spill);

        if let Some(src) = source {
            if exact.is_some_and(|s| visit(s.get(Some(src)), &[])) {
                return true;
            }
            if exec.is_some_and(|s| visit(s.get(Some(src)), &[])) {
                return true;
            }
            for (node, rel) in nodes.iter().rev().flatten() {
                if visit_dir(node, *rel, Some(src), visit) {
                    return true;
                }
            }
        }
        if exact.is_some_and(|s| visit(s.get(None), &[])) {
            return true;
        }
        if exec.is_some_and(|s| visit(s.get(None), &[])) {
            return true;
        }
        let mut matched = Vec::new();
        for (node, _) in nodes.iter().rev().flatten() {
            if node.patterns.is_empty() {
                continue;
            }
            matched.clear();
            matched.extend(
                node.patterns
                    .iter()
                    .copied()
                    .filter(|id| pattern_test(*id, path)),
            );
            if !matched.is_empty() && visit(&matched, &[]) {
                return true;
            }
        }
        for (node, rel) in nodes.iter().rev().flatten() {
            if visit_dir(node, *rel, None, visit) {
                return true;
            }
        }
        false
    }

    /// The directory nodes on the way from `/` to `path`, shallowest first; stops at the first
    /// directory without a node (nothing can match below it). Uses `inline` (no allocation per
    /// decision) unless the path is deeper than [`INLINE_DEPTH`], then `spill`.
    fn dir_walk<'s, 'b>(
        &'s self,
        path: &str,
        inline: &'b mut [Option<(&'s DirNode, Relation)>; INLINE_DEPTH],
        spill: &'b mut Vec<Option<(&'s DirNode, Relation)>>,
    ) -> &'b [Option<(&'s DirNode, Relation)>] {
        let mut out = Nodes {
            inline,
            len: 0,
            spill,
        };
        if self.root.is_none() || !path.starts_with('/') {
            return out.finish();
        }
        let last = path.rfind('/').unwrap_or(0);
        for (i, _) in path.match_indices('/') {
            let node = if i == 0 {
                self.root.as_ref()
            } else {
                self.dirs.get(&path[..i])
            };
            let Some(node) = node else {
                return out.finish();
            };
            out.push((
                node,
                if i == last {
                    Relation::Parent
                } else {
                    Relation::Ancestor
                },
            ));
        }
        if path.len() > 1 {
            if let Some(node) = self.dirs.get(path) {
                out.push((node, Relation::Itself));
            }
        }
        out.finish()
    }
}

/// Directory depths handled without allocating.
const INLINE_DEPTH: usize = 24;

/// A vector that lives in a caller's array until it outgrows it.
struct Nodes<'s, 'b> {
    inline: &'b mut [Option<(&'s DirNode, Relation)>; INLINE_DEPTH],
    len: usize,
    spill: &'b mut Vec<Option<(&'s DirNode, Relation)>>,
}

impl<'s, 'b> Nodes<'s, 'b> {
    fn push(&mut self, item: (&'s DirNode, Relation)) {
        if self.len < INLINE_DEPTH {
            self.inline[self.len] = Some(item);
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline[..]);
            }
            self.spill.push(Some(item));
        }
        self.len += 1;
    }

    fn finish(self) -> &'b [Option<(&'s DirNode, Relation)>] {
        if self.len <= INLINE_DEPTH {
            &self.inline[..self.len]
        } else {
            &self.spill[..]
        }
    }
}

fn visit_dir(
    node: &DirNode,
    rel: Relation,
    source: Option<&str>,
    visit: &mut dyn FnMut(&[u32], &[u32]) -> bool,
) -> bool {
    let direct = if rel == Relation::Ancestor {
        &[][..]
    } else {
        node.direct.get(source)
    };
    let recursive = node.recursive.get(source);
    (!direct.is_empty() || !recursive.is_empty()) && visit(direct, recursive)
}

/// Rules keyed by a small value (socket key, capability, domain).
#[derive(Debug)]
pub(crate) struct KeyedIndex<K> {
    map: FxHashMap<K, Slot>,
}

impl<K> Default for KeyedIndex<K> {
    fn default() -> Self {
        Self {
            map: FxHashMap::default(),
        }
    }
}

impl<K: Hash + Eq> KeyedIndex<K> {
    pub(crate) fn insert(&mut self, key: K, source: Option<&str>, id: u32) {
        self.map.entry(key).or_default().push(source, id);
    }

    pub(crate) fn get<Q>(&self, key: &Q, source: Option<&str>) -> &[u32]
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).map_or(&[], |s| s.get(source))
    }
}
