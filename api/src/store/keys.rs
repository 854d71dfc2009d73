//! API keys: issue, list, rotate, revoke, authenticate.
//!
//! A key is `rvk_` followed by 64 hex digits (256 random bits). Only its
//! SHA-256 is stored — a fast hash is right here because the secret has full
//! entropy, unlike a password — and the plain key is returned exactly once.
//! Authentication hashes the presented key, looks the hash up in an
//! in-memory cache, and confirms with a constant-time comparison; revoking a
//! key removes it from the cache before the call returns. A rotated key's
//! old secret keeps working until its grace period ends.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Store, StoreError, now_unix};

/// Every key starts with this, so leaked keys are recognisable (and
/// scannable by secret scanners).
pub const KEY_PREFIX: &str = "rvk_";
const SECRET_HEX_LEN: usize = 64;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// GET routes only.
    Read,
    /// Everything, including key management.
    Admin,
}

impl Scope {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    /// Parses `read` / `admin`.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "read" => Ok(Scope::Read),
            "admin" => Ok(Scope::Admin),
            other => Err(StoreError::Invalid(format!("unknown scope `{other}`"))),
        }
    }
}

/// Public facts about a key (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    /// Requests per minute; `None` = the configured default.
    pub rate_per_minute: Option<u32>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A plain key, shown once. Its `Debug`/`Display` never print it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    /// The key itself, for the one place that must hand it out.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(rvk_***)")
    }
}

/// A newly issued (or rotated) key.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub info: KeyInfo,
    pub secret: SecretKey,
}

#[derive(Debug, Clone)]
struct Cached {
    info: KeyInfo,
    hash: [u8; 32],
    /// Set for a rotated key's old secret: valid until then.
    valid_until: Option<i64>,
}

/// The key registry: SQLite for durability, a hash-keyed cache for speed.
#[derive(Debug)]
pub struct Keys {
    store: Arc<Store>,
    cache: RwLock<HashMap<[u8; 32], Cached>>,
}

/// Columns read by [`key_info`], in order.
const KEY_COLUMNS: &str = "id, name, scope, rate_per_minute, created_at, revoked_at";

/// A [`KeyInfo`] from the first six columns of a row (see [`KEY_COLUMNS`]).
fn key_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyInfo> {
    let scope: String = r.get(2)?;
    let scope = Scope::parse(&scope).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(KeyInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        scope,
        rate_per_minute: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

fn hash_of(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0_u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Invalid(format!("no randomness: {e}")))?;
    Ok(hex::encode(buf))
}

/// Cheap shape check before hashing anything a client sent.
fn well_formed(key: &str) -> bool {
    key.len() == KEY_PREFIX.len() + SECRET_HEX_LEN
        && key.starts_with(KEY_PREFIX)
        && key[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
}

impl Keys {
    /// Loads every usable key into the cache.
    pub fn load(store: Arc<Store>) -> Result<Self, StoreError> {
        let keys = Self {
            store,
            cache: RwLock::new(HashMap::new()),
        };
        keys.reload()?;
        Ok(keys)
    }

    fn reload(&self) -> Result<(), StoreError> {
        let now = now_unix();
        let mut fresh = HashMap::new();
        {
            let conn = self.store.conn();
            let mut stmt = conn.prepare(&format!(
                "SELECT {KEY_COLUMNS}, secret_hash, previous_hash, previous_valid_until
                 FROM api_keys WHERE revoked_at IS NULL"
            ))?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    key_info(r)?,
                    r.get::<_, Vec<u8>>(6)?,
                    r.get::<_, Option<Vec<u8>>>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                ))
            })?;
            for row in rows {
                let (info, hash, previous, until) = row?;
                if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
                    fresh.insert(
                        hash,
                        Cached {
                            info: info.clone(),
                            hash,
                            valid_until: None,
                        },
                    );
                }
                if let (Some(previous), Some(until)) = (previous, until)
                    && until > now
                    && let Ok(hash) = <[u8; 32]>::try_from(previous.as_slice())
                {
                    fresh.insert(
                        hash,
                        Cached {
                            info,
                            hash,
                            valid_until: Some(until),
                        },
                    );
                }
            }
        }
        *self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// A fresh random secret, not yet registered (see [`Keys::register`]).
    pub fn new_secret() -> Result<SecretKey, StoreError> {
        Ok(SecretKey(format!("{KEY_PREFIX}{}", random_hex(32)?)))
    }

    /// Issues a new key.
    pub fn issue(
        &self,
        name: &str,
        scope: Scope,
        rate_per_minute: Option<u32>,
    ) -> Result<IssuedKey, StoreError> {
        let secret = Self::new_secret()?;
        let info = self.register(name, scope, rate_per_minute, &secret)?;
        Ok(IssuedKey { info, secret })
    }

    /// Registers `secret` (from [`Keys::new_secret`]) as a key. Used when
    /// the secret must be safely handed out before it becomes valid.
    pub fn register(
        &self,
        name: &str,
        scope: Scope,
        rate_per_minute: Option<u32>,
        secret: &SecretKey,
    ) -> Result<KeyInfo, StoreError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(StoreError::Invalid(
                "a key name is 1 to 100 characters".to_owned(),
            ));
        }
        if !well_formed(secret.expose()) {
            return Err(StoreError::Invalid("malformed key".to_owned()));
        }
        let id = random_hex(6)?;
        let created_at = now_unix();
        self.store.conn().execute(
            "INSERT INTO api_keys (id, name, scope, secret_hash, rate_per_minute, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id,
                name,
                scope.as_str(),
                hash_of(secret.expose()).to_vec(),
                rate_per_minute,
                created_at
            ],
        )?;
        self.reload()?;
        Ok(KeyInfo {
            id,
            name: name.to_owned(),
            scope,
            rate_per_minute,
            created_at,
            revoked_at: None,
        })
    }

    /// Every key, revoked ones included, oldest first.
    pub fn list(&self) -> Result<Vec<KeyInfo>, StoreError> {
        let conn = self.store.read_conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
        ))?;
        let out = stmt
            .query_map([], key_info)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(out)
    }

    /// Revokes a key: refused from the moment this returns. `false` when no
    /// such (unrevoked) key exists.
    pub fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        let changed = self.store.conn().execute(
            "UPDATE api_keys SET revoked_at = ?2, previous_hash = NULL, previous_valid_until = NULL
             WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now_unix()],
        )?;
        self.reload()?;
        Ok(changed == 1)
    }

    /// Replaces a key's secret; the old one stays valid for `grace`.
    pub fn rotate(&self, id: &str, grace: Duration) -> Result<Option<IssuedKey>, StoreError> {
        let secret = Self::new_secret()?;
        let until = now_unix().saturating_add(i64::try_from(grace.as_secs()).unwrap_or(i64::MAX));
        let changed = self.store.conn().execute(
            "UPDATE api_keys SET previous_hash = secret_hash, previous_valid_until = ?3,
                                 secret_hash = ?2
             WHERE id = ?1 AND revoked_at IS NULL",
            params![id, hash_of(secret.expose()).to_vec(), until],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        self.reload()?;
        let info = self.list()?.into_iter().find(|k| k.id == id);
        Ok(info.map(|info| IssuedKey { info, secret }))
    }

    /// The key's facts if `presented` is a valid, unrevoked key.
    #[must_use]
    pub fn authenticate(&self, presented: &str) -> Option<KeyInfo> {
        if !well_formed(presented) {
            return None;
        }
        let hash = hash_of(presented);
        let cache = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = cache.get(&hash)?;
        if !bool::from(entry.hash.ct_eq(&hash)) {
            return None;
        }
        if entry.valid_until.is_some_and(|until| until <= now_unix()) {
            return None;
        }
        Some(entry.info.clone())
    }

    /// Whether any unrevoked admin key exists.
    pub fn has_active_admin(&self) -> Result<bool, StoreError> {
        let found: Option<String> = self
            .store
            .conn()
            .query_row(
                "SELECT id FROM api_keys WHERE scope = 'admin' AND revoked_at IS NULL LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::load(Arc::new(Store::in_memory().unwrap())).unwrap()
    }

    #[test]
    fn issued_key_authenticates_with_its_scope_and_is_shown_masked() {
        let keys = keys();
        let issued = keys.issue("ci", Scope::Read, Some(600)).unwrap();
        let secret = issued.secret.expose();
        assert!(secret.starts_with(KEY_PREFIX));
        assert_eq!(secret.len(), 68);
        assert!(!format!("{issued:?}").contains(&secret[4..]));
        let info = keys.authenticate(secret).unwrap();
        assert_eq!(info.scope, Scope::Read);
        assert_eq!(info.rate_per_minute, Some(600));
        // The database never holds the secret.
        let stored: Vec<u8> = keys
            .store
            .conn()
            .query_row("SELECT secret_hash FROM api_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, hash_of(secret).to_vec());
    }

    #[test]
    fn malformed_and_unknown_keys_are_refused() {
        let keys = keys();
        keys.issue("a", Scope::Admin, None).unwrap();
        for bad in [
            "",
            "rvk_",
            "rvk_zz",
            &format!("rvk_{}", "0".repeat(64)),
            &"x".repeat(10_000),
        ] {
            assert!(keys.authenticate(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn revoke_takes_effect_immediately() {
        let keys = keys();
        let issued = keys.issue("gone", Scope::Admin, None).unwrap();
        assert!(keys.has_active_admin().unwrap());
        assert!(keys.revoke(&issued.info.id).unwrap());
        assert!(keys.authenticate(issued.secret.expose()).is_none());
        assert!(!keys.revoke(&issued.info.id).unwrap());
        assert!(!keys.has_active_admin().unwrap());
        assert!(keys.list().unwrap()[0].revoked_at.is_some());
    }

    #[test]
    fn rotation_keeps_the_old_secret_for_the_grace_period_only() {
        let keys = keys();
        let first = keys.issue("rotating", Scope::Admin, None).unwrap();
        let rotated = keys
            .rotate(&first.info.id, Duration::from_secs(3600))
            .unwrap()
            .unwrap();
        assert_ne!(rotated.secret, first.secret);
        assert!(keys.authenticate(rotated.secret.expose()).is_some());
        assert!(
            keys.authenticate(first.secret.expose()).is_some(),
            "old secret within grace"
        );
        let again = keys
            .rotate(&first.info.id, Duration::ZERO)
            .unwrap()
            .unwrap();
        assert!(keys.authenticate(again.secret.expose()).is_some());
        assert!(
            keys.authenticate(rotated.secret.expose()).is_none(),
            "grace of zero"
        );
        assert!(
            keys.authenticate(first.secret.expose()).is_none(),
            "older than one rotation"
        );
        assert!(keys.rotate("nope", Duration::ZERO).unwrap().is_none());
    }

    #[test]
    fn names_are_validated() {
        let keys = keys();
        assert!(keys.issue("  ", Scope::Read, None).is_err());
        assert!(keys.issue(&"n".repeat(101), Scope::Read, None).is_err());
    }

    #[test]
    fn keys_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let secret = {
            let keys = Keys::load(Arc::new(Store::open(&path).unwrap())).unwrap();
            keys.issue("durable", Scope::Admin, None).unwrap().secret
        };
        let keys = Keys::load(Arc::new(Store::open(&path).unwrap())).unwrap();
        assert!(keys.authenticate(secret.expose()).is_some());
    }
}
