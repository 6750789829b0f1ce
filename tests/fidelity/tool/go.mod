module meshloop.dev/fidelity

go 1.26.0
