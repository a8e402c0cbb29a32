//! An in-memory [`Store`] for tests: the same staging contract as the disk, no disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::{Kind, Store, StoreError, check_name};

type Objects = HashMap<(Kind, String), Vec<u8>>;

#[derive(Debug, Default)]
pub struct MemoryStore {
    visible: Mutex<Objects>,
    staged: Mutex<BTreeMap<(Kind, String), Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn visible(&self) -> MutexGuard<'_, Objects> {
        // A poisoned lock only means another test thread panicked; the map is still consistent.
        self.visible.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Test hook: changes a visible object in place, as disk damage would.
    pub fn tamper(&self, kind: Kind, name: &str, f: impl FnOnce(&mut Vec<u8>)) -> bool {
        match self.visible().get_mut(&(kind, name.to_owned())) {
            Some(v) => {
                f(v);
                true
            }
            None => false,
        }
    }
}

impl Store for MemoryStore {
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> Result<(), StoreError> {
        check_name(name)?;
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((kind, name.to_owned()), data.to_vec());
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let staged = std::mem::take(&mut *self.staged.lock().unwrap_or_else(|e| e.into_inner()));
        self.visible().extend(staged);
        Ok(())
    }

    fn put_new(&self, kind: Kind, name: &str, data: &[u8]) -> Result<bool, StoreError> {
        check_name(name)?;
        let mut visible = self.visible();
        let key = (kind, name.to_owned());
        if visible.contains_key(&key) {
            return Ok(false);
        }
        visible.insert(key, data.to_vec());
        Ok(true)
    }

    fn get(&self, kind: Kind, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_name(name)?;
        Ok(self.visible().get(&(kind, name.to_owned())).cloned())
    }

    fn contains(&self, kind: Kind, name: &str) -> Result<bool, StoreError> {
        check_name(name)?;
        Ok(self.visible().contains_key(&(kind, name.to_owned())))
    }

    fn delete(&self, kind: Kind, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        self.visible().remove(&(kind, name.to_owned()));
        Ok(())
    }

    fn list(&self, kind: Kind) -> Result<Vec<String>, StoreError> {
        Ok(self
            .visible()
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n.clone())
            .collect())
    }

    fn size(&self, kind: Kind, name: &str) -> Result<Option<u64>, StoreError> {
        check_name(name)?;
        Ok(self.visible().get(&(kind, name.to_owned())).map(|v| v.len() as u64))
    }
}
