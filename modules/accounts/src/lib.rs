//! `accounts`: player accounts (register, login with salted PBKDF2-HMAC-SHA256 password hashes)
//! and an inventory of items listed by owner through an index. Commands 201-207.
//!
//! State lives in cached database objects only: `usernames` (text key, so a name is claimed
//! atomically by its insert), `accounts`, `logins` (keyed by session id) and `items` (indexed by
//! owner).

#[firefly_sdk::module]
mod accounts {
    use firefly_sdk::data::Table;
    use firefly_sdk::prelude::*;
    use hmac::{Hmac, Mac};
    use serde::{Deserialize, Serialize};
    use sha2::Sha256;

    /// PBKDF2 rounds. Enough to make offline guessing costly, small enough for the request's
    /// CPU budget inside wasm.
    const ITERATIONS: u32 = 10_000;

    /// An account.
    #[derive(Serialize, Deserialize, Table)]
    #[table(name = "accounts")]
    pub struct Account {
        #[primary_key]
        pub id: u64,
        pub username: String,
        pub salt: Vec<u8>,
        pub hash: Vec<u8>,
        pub iterations: u32,
        pub created_micros: u64,
    }

    /// A claimed username → its account.
    #[derive(Serialize, Deserialize, Table)]
    #[table(name = "usernames")]
    pub struct Username {
        #[primary_key]
        pub name: String,
        pub account: u64,
    }

    /// Which account a session logged in as (login also binds the session to the account's
    /// user id with `ctx.bind_user`, so other modules can push to the player by user id).
    #[derive(Serialize, Deserialize, Table)]
    #[table(name = "logins")]
    pub struct Login {
        #[primary_key]
        pub session: u64,
        pub account: u64,
        pub at_micros: u64,
    }

    /// One inventory item.
    #[derive(Debug, Clone, Serialize, Deserialize, Table)]
    #[table(name = "items")]
    pub struct Item {
        #[primary_key]
        pub id: u64,
        #[index]
        pub owner: u64,
        pub kind: String,
        pub qty: u32,
    }

    /// Request of 201 (register) and 202 (login).
    #[derive(Deserialize)]
    pub struct Credentials {
        pub username: String,
        pub password: String,
    }

    /// Reply of 201, 202 and 203.
    #[derive(Serialize)]
    pub struct Me {
        pub account: u64,
        pub username: String,
    }

    fn pbkdf2(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        // PBKDF2-HMAC-SHA256 (RFC 8018), one 32-byte block.
        let mac = |data: &[&[u8]]| -> [u8; 32] {
            let Ok(mut m) = Hmac::<Sha256>::new_from_slice(password) else {
                return [0; 32];
            };
            for d in data {
                m.update(d);
            }
            m.finalize().into_bytes().into()
        };
        let mut u = mac(&[salt, &1u32.to_be_bytes()]);
        let mut out = u;
        for _ in 1..iterations {
            u = mac(&[&u]);
            for (o, x) in out.iter_mut().zip(u.iter()) {
                *o ^= x;
            }
        }
        out.to_vec()
    }

    /// Compares without an early exit, so timing says nothing about where hashes differ.
    fn same(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    fn check_name(name: &str) -> Result<()> {
        ensure!(
            (3..=32).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "invalid_username",
            "a username has 3 to 32 letters, digits, `_` or `-`"
        );
        Ok(())
    }

    /// Command 201: create an account.
    #[handler(201)]
    fn register(ctx: &mut Ctx, req: Credentials) -> Result<Me> {
        check_name(&req.username)?;
        ensure!(
            req.password.len() >= 8,
            "weak_password",
            "a password has at least 8 characters"
        );
        let id = ctx.alloc_id::<Account>()?;
        // Claiming the name is the atomic step: two concurrent registrations of one name
        // cannot both insert it.
        match ctx.insert(&Username {
            name: req.username.to_lowercase(),
            account: id,
        }) {
            Ok(_) => {}
            Err(DataError::AlreadyExists(_)) => {
                bail!("username_taken", "`{}` is taken", req.username)
            }
            Err(e) => return Err(e.into()),
        }
        let mut salt = vec![0u8; 16];
        ctx.fill_random(&mut salt);
        let hash = pbkdf2(req.password.as_bytes(), &salt, ITERATIONS);
        ctx.insert(&Account {
            id,
            username: req.username.clone(),
            salt,
            hash,
            iterations: ITERATIONS,
            created_micros: ctx.now_micros(),
        })?;
        info!("registered account {id} ({})", req.username);
        Ok(Me {
            account: id,
            username: req.username,
        })
    }

    /// Command 202: log in; the session is recorded as this account's.
    #[handler(202)]
    fn login(ctx: &mut Ctx, req: Credentials) -> Result<Me> {
        let denied = || Error::new("bad_credentials", "unknown username or wrong password");
        let Some(name) = ctx.get::<Username>(req.username.to_lowercase())? else {
            return Err(denied());
        };
        let Some(account) = ctx.get::<Account>(name.account)? else {
            return Err(denied());
        };
        let hash = pbkdf2(req.password.as_bytes(), &account.salt, account.iterations);
        if !same(&hash, &account.hash) {
            return Err(denied());
        }
        let login = Login {
            session: ctx.session(),
            account: account.id,
            at_micros: ctx.now_micros(),
        };
        // A session that logs in again (as anyone) replaces its login.
        let _ = ctx.delete::<Login>(ctx.session());
        ctx.insert(&login)?;
        ctx.bind_user(&account.id.to_string())?;
        Ok(Me {
            account: account.id,
            username: account.value.username,
        })
    }

    fn current(ctx: &Ctx) -> Result<u64> {
        match ctx.get::<Login>(ctx.session())? {
            Some(login) => Ok(login.account),
            None => bail!("not_logged_in", "log in first (command 202)"),
        }
    }

    /// Command 203: who this session is logged in as.
    #[handler(203)]
    fn whoami(ctx: &mut Ctx, _req: ()) -> Result<Me> {
        let account = current(ctx)?;
        let Some(a) = ctx.get::<Account>(account)? else {
            bail!("not_logged_in", "the account is gone");
        };
        Ok(Me {
            account,
            username: a.value.username,
        })
    }

    /// Request of 204.
    #[derive(Deserialize)]
    pub struct NewItem {
        pub kind: String,
        pub qty: u32,
    }

    /// Command 204: add an item to the logged-in account's inventory; replies with it.
    #[handler(204)]
    fn add_item(ctx: &mut Ctx, req: NewItem) -> Result<Item> {
        let owner = current(ctx)?;
        ensure!(req.qty > 0, "invalid_quantity", "quantity must be positive");
        let item = Item {
            id: ctx.alloc_id::<Item>()?,
            owner,
            kind: req.kind,
            qty: req.qty,
        };
        ctx.insert(&item)?;
        Ok(item)
    }

    /// Command 205: the logged-in account's inventory, by item id.
    #[handler(205)]
    fn inventory(ctx: &mut Ctx, _req: ()) -> Result<Vec<Item>> {
        let owner = current(ctx)?;
        let mut items = Vec::new();
        for key in ctx.list_by::<Item, _>("owner", &owner)? {
            if let Some(item) = ctx.get::<Item>(key)? {
                items.push(item.value);
            }
        }
        Ok(items)
    }

    /// Request of 206.
    #[derive(Deserialize)]
    pub struct DropItem {
        pub id: u64,
    }

    /// Command 206: remove one of the account's items.
    #[handler(206)]
    fn drop_item(ctx: &mut Ctx, req: DropItem) -> Result<()> {
        let owner = current(ctx)?;
        let Some(item) = ctx.get::<Item>(req.id)? else {
            bail!("not_found", "no item {}", req.id);
        };
        ensure!(
            item.owner == owner,
            "not_yours",
            "item {} is not yours",
            req.id
        );
        ctx.delete_versioned(&item)?;
        Ok(())
    }

    /// Command 207: log out.
    #[handler(207)]
    fn logout(ctx: &mut Ctx, _req: ()) -> Result<()> {
        ctx.unbind_user()?;
        match ctx.delete::<Login>(ctx.session()) {
            Ok(()) | Err(DataError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A session that ends is logged out.
    #[on_disconnect]
    fn gone(ctx: &mut Ctx) -> Result<()> {
        match ctx.delete::<Login>(ctx.session()) {
            Ok(()) | Err(DataError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
