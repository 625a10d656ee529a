//! Write Stockade tools in Rust.
//!
//! A tool crate declares its tools once and exports them:
//!
//! ```ignore
//! use stockade_sdk::{Output, Tool, ToolError, Toolbox};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Shout { text: String }
//!
//! struct MyTools;
//! impl Toolbox for MyTools {
//!     fn tools() -> Vec<Tool> {
//!         vec![Tool::new("shout", "Upper-cases text", |a: Shout| {
//!             Ok(Output::text(a.text.to_uppercase()))
//!         })
//!         .read_only()]
//!     }
//! }
//! stockade_sdk::export_toolbox!(MyTools);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` and register the
//! `.wasm` file in a manifest.

pub mod http;
mod tool;

/// Severity of a [`log`] line.
pub use bindings::stockade::tool::host::Level;
pub use schemars;
pub use serde_json;
pub use tool::{Media, Output, Tool, ToolError, Toolbox, caller, log};

/// Generated bindings of the `stockade:tool` world.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "tool-component",
        pub_export_macro: true,
        export_macro_name: "__export_tool_component",
        default_bindings_module: "stockade_sdk::bindings",
    });
}

#[doc(hidden)]
pub use tool::{__call, __list};

/// Exports a [`Toolbox`] as this component's `stockade:tool/tool`.
#[macro_export]
macro_rules! export_toolbox {
    ($toolbox:ty) => {
        struct __StockadeExport;

        impl $crate::bindings::exports::stockade::tool::tool::Guest for __StockadeExport {
            fn list() -> ::std::vec::Vec<$crate::bindings::stockade::tool::types::Descriptor> {
                $crate::__list::<$toolbox>()
            }

            fn call(
                name: ::std::string::String,
                arguments: ::std::string::String,
            ) -> ::std::result::Result<
                $crate::bindings::stockade::tool::types::Output,
                $crate::bindings::stockade::tool::types::ToolError,
            > {
                $crate::__call::<$toolbox>(&name, &arguments)
            }
        }

        $crate::bindings::__export_tool_component!(__StockadeExport with_types_in $crate::bindings);
    };
}
