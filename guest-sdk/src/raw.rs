//! The raw host imports, generated from the ABI's single list (`firefly_abi::for_each_import!`).
//!
//! Outside wasm (host builds for `cargo check`/`clippy`/unit tests) the same functions exist
//! but panic: the host functions only exist inside a module.

macro_rules! declare_imports {
    (module = $module:literal; $( $(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?; )*) => {
        #[cfg(target_arch = "wasm32")]
        #[link(wasm_import_module = $module)]
        unsafe extern "C" {
            $( $(#[$meta])* pub fn $name($($arg: $ty),*) $(-> $ret)?; )*
        }

        $(
            $(#[$meta])*
            ///
            /// (Host build stub: panics, the host functions exist only inside a wasm module.)
            #[cfg(not(target_arch = "wasm32"))]
            #[allow(unused_variables, clippy::panic, reason = "stub for non-wasm builds")]
            pub unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
                panic!("firefly host functions exist only inside a wasm module")
            }
        )*
    };
}

firefly_abi::for_each_import!(declare_imports);
