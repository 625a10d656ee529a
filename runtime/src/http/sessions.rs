//! Who opened each legacy session. A session id is never authentication:
//! every request on a session is authenticated again, and its subject must
//! be the one that opened it. A session with no recorded owner is refused
//! (closed, not open, when the table forgets one).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Sessions and their owners, bounded.
pub struct SessionOwners {
    owners: Mutex<HashMap<String, Owner>>,
    capacity: usize,
}

struct Owner {
    subject: String,
    last_used: Instant,
}

/// Why a request on a session is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum NotYours {
    /// No session by that id is known to belong to anyone.
    Unknown,
    /// The session belongs to another subject.
    Other,
}

impl SessionOwners {
    /// A table of at most `capacity` sessions.
    pub fn new(capacity: usize) -> Self {
        Self {
            owners: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// Whether `subject` may use session `id`.
    pub fn check(&self, id: &str, subject: &str) -> Result<(), NotYours> {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        match owners.get_mut(id) {
            None => Err(NotYours::Unknown),
            Some(owner) if owner.subject != subject => Err(NotYours::Other),
            Some(owner) => {
                owner.last_used = Instant::now();
                Ok(())
            }
        }
    }

    /// Records that `subject` opened `id`. When the table is full the
    /// least recently used session is forgotten and returned, so the
    /// caller can close it.
    pub fn claim(&self, id: &str, subject: &str) -> Option<String> {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let evicted = if owners.len() >= self.capacity && !owners.contains_key(id) {
            let oldest = owners
                .iter()
                .min_by_key(|(_, owner)| owner.last_used)
                .map(|(id, _)| id.clone());
            oldest.inspect(|id| {
                owners.remove(id);
            })
        } else {
            None
        };
        owners.insert(
            id.to_owned(),
            Owner {
                subject: subject.to_owned(),
                last_used: Instant::now(),
            },
        );
        evicted
    }

    /// Forgets `id` (the client deleted it).
    pub fn release(&self, id: &str) {
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_opener_may_use_a_session() {
        let owners = SessionOwners::new(2);
        assert_eq!(owners.check("s1", "ann"), Err(NotYours::Unknown));
        assert_eq!(owners.claim("s1", "ann"), None);
        assert_eq!(owners.check("s1", "ann"), Ok(()));
        assert_eq!(owners.check("s1", "bob"), Err(NotYours::Other));
        owners.claim("s2", "bob");
        owners.check("s1", "ann").unwrap();
        // Full: the least recently used (s2) goes, and is refused after.
        assert_eq!(owners.claim("s3", "cat"), Some("s2".into()));
        assert_eq!(owners.check("s2", "bob"), Err(NotYours::Unknown));
        owners.release("s1");
        assert_eq!(owners.check("s1", "ann"), Err(NotYours::Unknown));
    }
}
