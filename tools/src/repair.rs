//! `varve repair`: placeholder, filled in below.

use std::path::Path;

use crate::error::{Result, ToolError};
use crate::format::Out;

/// Salvages the store in `dir` into `to`.
///
/// # Errors
/// Always, for now.
pub fn run(_out: &mut Out, _dir: &Path, _to: &Path) -> Result<()> {
    Err(ToolError::Invalid("not yet".into()))
}
