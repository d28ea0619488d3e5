//! Attribute prompts → edit-space directions (StyleCLIP's global directions, as ZOOM uses them).
//!
//! 1. **Channel relevance** ([`relevance`]): for each editable channel c, the average CLIP-space
//!    change of an image when c moves from −kσ_c to +kσ_c, over probe samples. Computed once per
//!    generator + CLIP pair and cached on disk by content hash.
//! 2. **Text direction** ([`text`]): Δt = normalise(t(prompt) − t(neutral)), each t an average
//!    over prompt templates.
//! 3. **Projection** ([`project`]): r = relevance · Δt, channels with |r| < β dropped, scaled by
//!    σ and normalised to a unit vector in edit space.

pub mod gradient;
pub mod project;
pub mod relevance;
pub mod text;

pub use project::{attribute_direction, project, random_direction, Direction};
pub use relevance::{ChannelRelevance, RelevanceSettings};
pub use text::{text_direction, DEFAULT_TEMPLATES};
