module github.com/foreman-dev/foreman/clients/go/ollamacompat012

go 1.24.0

require (
	github.com/foreman-dev/foreman/clients/go v0.0.0
	github.com/ollama/ollama v0.12.6
)

require (
	github.com/google/uuid v1.6.0 // indirect
	golang.org/x/crypto v0.36.0 // indirect
	golang.org/x/sys v0.31.0 // indirect
)

// The client is this repository's own module, one directory up.
replace github.com/foreman-dev/foreman/clients/go => ../
