//! One kind of object of a [`ClusterState`](super::ClusterState): a list
//! whose objects are shared, not copied, between the states that hold them.
//!
//! The store keeps the lab's state, a few past ones, and the copies the
//! API's writes and the control loop edit. At 1 000 pods and 10 000
//! Services a deep copy of a state took 110 ms and each commit compared
//! every object: a write cost a third of a second and the lab's process
//! held several copies. Here a copy is one pointer per object, an edit
//! copies only the object it changes (`Arc::make_mut`), and the store
//! tells an unchanged object by its pointer (see [`Collection::same`]).
//!
//! Reading works as on a `Vec<T>` (`iter`, `len`, `[i]`, `for x in &c`);
//! `iter_mut` and `&mut c[i]` copy an object on its first change only
//! ([`ObjectMut`] copies when written through, not when read).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ops::{Deref, DerefMut, Index, IndexMut};
use std::sync::Arc;

#[derive(Debug)]
pub struct Collection<T>(Vec<Arc<T>>);

/// The iterators are named types, not `impl Iterator`: a borrow through an
/// opaque type is held to the end of a `match` on it (it might have a
/// destructor), which `match list.iter().position(…)` trips over.
pub type Iter<'a, T> = std::iter::Map<std::slice::Iter<'a, Arc<T>>, fn(&'a Arc<T>) -> &'a T>;
pub type IterMut<'a, T> =
    std::iter::Map<std::slice::IterMut<'a, Arc<T>>, fn(&'a mut Arc<T>) -> ObjectMut<'a, T>>;

fn deref_arc<T>(a: &Arc<T>) -> &T {
    a
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Collection(self.0.clone())
    }
}

impl<T> Default for Collection<T> {
    fn default() -> Self {
        Collection(Vec::new())
    }
}

impl<T: PartialEq> PartialEq for Collection<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| Arc::ptr_eq(a, b) || **a == **b)
    }
}

impl<T: PartialEq> PartialEq<Vec<T>> for Collection<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        self.0.len() == other.len() && self.0.iter().zip(other).all(|(a, b)| **a == *b)
    }
}

impl<T> Collection<T> {
    pub fn new() -> Self {
        Collection(Vec::new())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> Iter<'_, T> {
        self.0.iter().map(deref_arc)
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        self.0.get(i).map(|a| &**a)
    }

    pub fn first(&self) -> Option<&T> {
        self.get(0)
    }

    pub fn last(&self) -> Option<&T> {
        self.0.last().map(|a| &**a)
    }

    pub fn push(&mut self, x: T) {
        self.0.push(Arc::new(x));
    }

    /// Puts `x` in place of the object at `i`.
    pub fn set(&mut self, i: usize, x: T) {
        self.0[i] = Arc::new(x);
    }

    /// Puts a shared object in place of the object at `i`.
    pub fn set_shared(&mut self, i: usize, x: Arc<T>) {
        self.0[i] = x;
    }

    pub fn insert(&mut self, i: usize, x: T) {
        self.0.insert(i, Arc::new(x));
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.0.retain(|a| keep(a));
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn truncate(&mut self, n: usize) {
        self.0.truncate(n);
    }

    pub fn sort_by(&mut self, mut cmp: impl FnMut(&T, &T) -> std::cmp::Ordering) {
        self.0.sort_by(|a, b| cmp(a, b));
    }

    pub fn sort_by_key<K: Ord>(&mut self, mut key: impl FnMut(&T) -> K) {
        self.0.sort_by_key(|a| key(a));
    }

    /// The shared objects themselves (for the store's comparisons).
    pub fn shared(&self) -> &[Arc<T>] {
        &self.0
    }

    /// Whether both hold the very same objects (no object was replaced,
    /// added or removed): a pointer comparison per object.
    pub fn same(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.0.iter().zip(&other.0).all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// Whether both hold the same objects but for their resourceVersions
    /// (what a commit sets): the very same ones, or equal but for that.
    pub fn same_but_versions(&self, other: &Self) -> bool
    where
        T: Clone + PartialEq + k8s_openapi::Metadata<Ty = ObjectMeta>,
    {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|(a, b)| {
                Arc::ptr_eq(a, b) || Arc::ptr_eq(&keep_if_equal(Some(a), (**b).clone()), a)
            })
    }

    pub fn from_shared(v: Vec<Arc<T>>) -> Self {
        Collection(v)
    }

    pub fn into_shared(self) -> Vec<Arc<T>> {
        self.0
    }
}

impl<T: Clone> Collection<T> {
    /// Lets each object be changed; only those written through are copied.
    pub fn iter_mut(&mut self) -> IterMut<'_, T> {
        self.0.iter_mut().map(ObjectMut)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.0.get_mut(i).map(Arc::make_mut)
    }

    pub fn last_mut(&mut self) -> Option<&mut T> {
        self.0.last_mut().map(Arc::make_mut)
    }

    pub fn remove(&mut self, i: usize) -> T {
        Arc::unwrap_or_clone(self.0.remove(i))
    }

    pub fn pop(&mut self) -> Option<T> {
        self.0.pop().map(Arc::unwrap_or_clone)
    }

    /// Removes the objects in `range` (at once, unlike `Vec::drain`) and
    /// returns them.
    pub fn drain(&mut self, range: impl std::ops::RangeBounds<usize>) -> Vec<T> {
        self.0.drain(range).map(Arc::unwrap_or_clone).collect()
    }
}

/// `new`, or `old` where they are equal but for the resourceVersion (so
/// it stays the same object for the store).
pub fn keep_if_equal<T>(old: Option<&Arc<T>>, mut new: T) -> Arc<T>
where
    T: PartialEq + k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    if let Some(o) = old {
        new.metadata_mut().resource_version = o.metadata().resource_version.clone();
        if **o == new {
            return o.clone();
        }
    }
    Arc::new(new)
}

/// One object of a [`Collection`] being iterated mutably: reads see the
/// shared object, the first write copies it if another state shares it.
pub struct ObjectMut<'a, T>(&'a mut Arc<T>);

impl<T> Deref for ObjectMut<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0
    }
}

impl<T: Clone> DerefMut for ObjectMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        Arc::make_mut(self.0)
    }
}

impl<T> Index<usize> for Collection<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.0[i]
    }
}

impl<T: Clone> IndexMut<usize> for Collection<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        Arc::make_mut(&mut self.0[i])
    }
}

impl<T> From<Vec<T>> for Collection<T> {
    fn from(v: Vec<T>) -> Self {
        Collection(v.into_iter().map(Arc::new).collect())
    }
}

impl<T> FromIterator<T> for Collection<T> {
    fn from_iter<I: IntoIterator<Item = T>>(it: I) -> Self {
        Collection(it.into_iter().map(Arc::new).collect())
    }
}

impl<T> Extend<T> for Collection<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, it: I) {
        self.0.extend(it.into_iter().map(Arc::new));
    }
}

impl<'a, T> IntoIterator for &'a Collection<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, T: Clone> IntoIterator for &'a mut Collection<T> {
    type Item = ObjectMut<'a, T>;
    type IntoIter = IterMut<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<T: Clone> IntoIterator for Collection<T> {
    type Item = T;
    type IntoIter = std::iter::Map<std::vec::IntoIter<Arc<T>>, fn(Arc<T>) -> T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().map(Arc::unwrap_or_clone)
    }
}

impl<T: Serialize> Serialize for Collection<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Collection<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<T>::deserialize(d).map(Collection::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_shares_until_written() {
        let mut a: Collection<String> = vec!["x".to_string(), "y".to_string()].into();
        let b = a.clone();
        assert!(a.same(&b));
        // Read through iter_mut: nothing copied.
        for s in a.iter_mut() {
            assert!(!s.is_empty());
        }
        assert!(a.same(&b));
        for mut s in a.iter_mut() {
            if *s == "y" {
                s.push('!');
            }
        }
        assert!(!a.same(&b));
        assert!(Arc::ptr_eq(&a.shared()[0], &b.shared()[0]));
        assert_eq!(b[1], "y");
        assert_eq!(a[1], "y!");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"["x","y!"]"#);
        let back: Collection<String> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn a_commit_s_new_resource_versions_are_no_change() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let cm = |name: &str, rv: &str, v: &str| ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            data: Some([("k".to_string(), v.to_string())].into()),
            ..Default::default()
        };
        let a: Collection<ConfigMap> = vec![cm("a", "1", "x"), cm("b", "1", "y")].into();
        let mut b = a.clone();
        b.set(1, cm("b", "7", "y"));
        assert!(!a.same(&b));
        assert!(a.same_but_versions(&b));
        b.set(1, cm("b", "8", "z"));
        assert!(!a.same_but_versions(&b));
        b.truncate(1);
        assert!(!a.same_but_versions(&b));
    }
}
