//! Policy files → compiled routes and JSONPath selectors. PURE.
