//! `?limit=&cursor=` on list routes.

use phoenix_actors::paging::{PageRequest, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use serde::Deserialize;

use super::ApiError;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub limit: Option<u32>,
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
