//! The host imports, declared from the ABI's single list (`firefly_abi::for_each_import!`),
//! and the few safe wrappers the engine uses everywhere.

macro_rules! declare_imports {
    (module = $module:literal; $( $(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?; )*) => {
        /// The raw imports of the host.
        pub mod ffi {
            #[link(wasm_import_module = $module)]
            unsafe extern "C" {
                $( $(#[$meta])* pub fn $name($($arg: $ty),*) $(-> $ret)?; )*
            }
        }
    };
}

firefly_abi::for_each_import!(declare_imports);

/// The current call's input.
pub fn read_input(len: u32) -> Vec<u8> {
    let mut input = vec![0u8; len as usize];
    // SAFETY: `input` is exactly `len` bytes long; the host writes within it.
    unsafe { ffi::input_read(input.as_mut_ptr() as u32, len) };
    input
}

/// Sets the current call's output.
pub fn write_output(bytes: &[u8]) {
    // SAFETY: the pointer and length describe `bytes`, which the host only reads.
    unsafe { ffi::output_write(bytes.as_ptr() as u32, bytes.len() as u32) }
}

/// Marks the current call failed.
pub fn set_error(code: &str, message: &str) {
    // SAFETY: both pointer/length pairs describe live strings the host only reads.
    unsafe {
        ffi::error_set(
            code.as_ptr() as u32,
            code.len() as u32,
            message.as_ptr() as u32,
            message.len() as u32,
        )
    }
}

/// Writes a log line at `level`.
pub fn log(level: u32, text: &str) {
    // SAFETY: the pointer and length describe `text`, which the host only reads.
    unsafe { ffi::log(level, text.as_ptr() as u32, text.len() as u32) }
}

/// Reads `len` bytes of the last `call_node` / `user_of` / `room_call` answer.
pub fn call_reply(len: u32) -> Vec<u8> {
    let mut answer = vec![0u8; len as usize];
    // SAFETY: `answer` is exactly `len` bytes long; the host writes within it.
    unsafe { ffi::call_reply_read(answer.as_mut_ptr() as u32, len) };
    answer
}

/// Reads `len` bytes of the last `data_call` answer.
pub fn data_reply(len: u32) -> Vec<u8> {
    let mut answer = vec![0u8; len as usize];
    // SAFETY: `answer` is exactly `len` bytes long; the host writes within it.
    unsafe { ffi::data_reply_read(answer.as_mut_ptr() as u32, len) };
    answer
}
