//! `misbehave`: a test module that breaks the rules, to prove the sandbox holds. Never deploy.

#[firefly_sdk::module]
mod misbehave {
    use std::hint::black_box;

    use firefly_sdk::prelude::*;
    use serde::{Deserialize, Serialize};

    /// 901: panics.
    #[handler(901)]
    fn panics(_ctx: &mut Ctx, _req: Raw) -> Result<Raw> {
        if black_box(true) {
            panic!("boom");
        }
        Ok(Raw::default())
    }

    /// 902: never returns.
    #[handler(902)]
    fn loops(_ctx: &mut Ctx, _req: Raw) -> Result<Raw> {
        let mut n: u64 = 0;
        while black_box(true) {
            n = black_box(n.wrapping_add(1));
        }
        Ok(Raw(n.to_le_bytes().to_vec()))
    }

    /// 903: allocates until something stops it.
    #[handler(903)]
    fn hoards(_ctx: &mut Ctx, _req: Raw) -> Result<Raw> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            let chunk = vec![1u8; 1 << 20];
            chunks.push(black_box(chunk));
            if black_box(chunks.len()) == usize::MAX {
                break;
            }
        }
        Ok(Raw(vec![chunks.len() as u8]))
    }

    /// Small frames: exhausts the wasm call stack (the host's `stack` limit) first.
    #[inline(never)]
    fn deeper(n: u64) -> u64 {
        if black_box(n) == u64::MAX {
            return n;
        }
        deeper(n + 1).rotate_left(1) ^ n
    }

    /// 904: recurses without bound, with small frames.
    #[handler(904)]
    fn recurses(_ctx: &mut Ctx, _req: Raw) -> Result<Raw> {
        Ok(Raw(deeper(0).to_le_bytes().to_vec()))
    }

    /// Big frames: exhausts Rust's shadow stack in linear memory first.
    #[inline(never)]
    fn deeper_fat(n: u64) -> u64 {
        let frame = black_box([n; 64]);
        if black_box(n) == u64::MAX {
            return n;
        }
        black_box(deeper_fat(n + 1)).wrapping_add(frame[(n % 64) as usize])
    }

    /// 910: recurses without bound, with big frames.
    #[handler(910)]
    fn recurses_fat(_ctx: &mut Ctx, _req: Raw) -> Result<Raw> {
        Ok(Raw(deeper_fat(0).to_le_bytes().to_vec()))
    }

    /// 911: well behaved: returns its payload (the neighbour of misbehaving requests in tests
    /// of pipelined batches).
    #[handler(911)]
    fn echoes(_ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        Ok(payload)
    }

    /// 912: pushes its payload to its own session on topic 9120, then returns it.
    #[handler(912)]
    fn pushes_then_echoes(ctx: &mut Ctx, payload: Raw) -> Result<Raw> {
        ctx.push_raw(9120, &payload.0)?;
        Ok(payload)
    }

    /// 905: fails the way a game rule does.
    #[handler(905)]
    fn refuses(_ctx: &mut Ctx, _req: Raw) -> Result<Raw> {
        Err(Error::new("custom_code", "custom message"))
    }

    /// Request of 906.
    #[derive(Deserialize)]
    pub struct Spin {
        pub millis: u64,
    }

    /// Reply of 906.
    #[derive(Serialize)]
    pub struct Spun {
        pub spun_ms: u64,
    }

    /// 906: burns CPU for `millis` of wall clock.
    #[handler(906)]
    fn spin(ctx: &mut Ctx, req: Spin) -> Result<Spun> {
        let start = ctx.now_micros();
        let end = start + req.millis * 1000;
        let mut now = start;
        while now < end {
            now = ctx.now_micros();
        }
        Ok(Spun {
            spun_ms: (now - start) / 1000,
        })
    }

    /// 907: writes to stdout and stderr (captured into the node's log).
    #[handler(907)]
    fn prints(_ctx: &mut Ctx, _req: Raw) -> Result<Raw> {
        println!("stdout line from guest");
        eprintln!("stderr line from guest");
        Ok(Raw::default())
    }

    /// Reply of 908.
    #[derive(Serialize)]
    pub struct WasiInfo {
        pub wasi_time_secs: u64,
        pub wasi_random: u64,
    }

    /// 908: WASI clocks and randomness work.
    #[handler(908)]
    fn wasi(_ctx: &mut Ctx, _req: ()) -> Result<WasiInfo> {
        use std::hash::{BuildHasher, Hasher};
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // RandomState seeds itself from WASI `random_get`; a fresh one per call differs.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(now);
        Ok(WasiInfo {
            wasi_time_secs: now,
            wasi_random: hasher.finish(),
        })
    }

    /// Reply of 909.
    #[derive(Serialize, PartialEq, Debug)]
    pub struct Sandbox {
        pub fs_ok: bool,
        pub env_ok: bool,
        pub net_ok: bool,
    }

    /// 909: files, environment and network are not there.
    #[handler(909)]
    fn escape(_ctx: &mut Ctx, _req: ()) -> Result<Sandbox> {
        Ok(Sandbox {
            fs_ok: std::fs::read("/etc/passwd").is_ok() || std::fs::read_dir("/").is_ok(),
            env_ok: std::env::var("HOME").is_ok() || std::env::vars().next().is_some(),
            net_ok: std::net::TcpStream::connect("127.0.0.1:1").is_ok(),
        })
    }
}
