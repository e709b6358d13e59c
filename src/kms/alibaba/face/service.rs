//! The service and its one region.

use super::*;

impl AlibabaFace {
    /// DescribeRegions.
    pub(super) fn describe_regions(&self, _caller: Caller<'_>) -> Result<Value, AlibabaError> {
        Ok(json!({
            "Regions": { "Region": [{ "RegionId": REGION_ID }] },
        }))
    }

    /// DescribeService.
    pub(super) fn describe_service(&self, _caller: Caller<'_>) -> Result<Value, AlibabaError> {
        Ok(describe_service())
    }
}
