//! Stand-in for serde: `#[derive(Serialize, Deserialize)]` accepted, nothing generated.
//! The generator writes the seed's serde_json shape itself (main.rs, `serde_json_of`).
extern crate proc_macro;
use proc_macro::TokenStream;

#[proc_macro_derive(Serialize)]
pub fn serialize(_input: TokenStream) -> TokenStream { TokenStream::new() }

#[proc_macro_derive(Deserialize)]
pub fn deserialize(_input: TokenStream) -> TokenStream { TokenStream::new() }
