// Package ollamacompat012 holds only tests: what the official Ollama Go client from v0.12 on
// (github.com/ollama/ollama/api v0.12.6) shows a user whose token foreman refuses.
//
// From v0.12 the client turns every 401 into an api.AuthorizationError whose text is the body's
// "status" field (non-streaming calls) or the HTTP status line (streaming calls), never the body's
// "error". It is a module of its own, beside ollamacompat (v0.11.4), because one module can
// require only one version of github.com/ollama/ollama. The client module's test
// TestOfficialOllamaClientModules runs these tests, so `go test ./...` in clients/go covers them.
package ollamacompat012
