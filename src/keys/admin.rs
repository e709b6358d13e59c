//! Admin socket.
