//! The service itself.

use super::*;

impl TencentFace {
    /// GetServiceStatus.
    pub(super) fn get_service_status(&self, caller: &Principal) -> Result<Value, TencentError> {
        Ok(json!({
            "ServiceEnabled": true,
            "InvalidType": 0,
            "UserLevel": 0,
            "CmkUserCount": self.visible_keys(caller).len(),
            "IsAllowedDataKeyHosted": false,
        }))
    }
}
