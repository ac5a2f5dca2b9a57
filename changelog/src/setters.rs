//! Builder setters for option structs.
//!
//! Option structs are `#[non_exhaustive]`, so that a new field does not
//! break their users: they are built from `default()` and these setters,
//! one per field, named after the field (whose name carries its unit).

/// Generates one `#[must_use]` setter per listed field:
/// `option_setters!(LogOptions { segment_size_bytes: u64 })` gives
/// `LogOptions::segment_size_bytes(self, u64) -> Self`.
#[doc(hidden)]
#[macro_export]
macro_rules! option_setters {
    ($ty:ident { $($field:ident: $t:ty),* $(,)? }) => {
        impl $ty {
            $(
                #[doc = concat!("Sets `", stringify!($field), "` (see the field).")]
                #[must_use]
                pub fn $field(mut self, value: $t) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}
