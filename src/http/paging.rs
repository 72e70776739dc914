//! `?limit=&cursor=` on list routes.

use phoenix_actors::paging::{PageRequest, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use serde::Deserialize;

use super::ApiError;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Most items on the page (1 to 500; 50 when not given).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if limit == 0 || limit > MAX_PAGE_SIZE {
            return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_PAGE_SIZE}")));
        }
        Ok(PageRequest { limit, after: self.cursor.clone().filter(|c| !c.is_empty()) })
    }
}
