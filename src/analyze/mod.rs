//! Analysis of Istio routing: findings with file:line locations, and route simulation.
