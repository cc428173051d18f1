// Package ollamacompat holds only tests: the official Ollama Go client
// (github.com/ollama/ollama/api) talking to a real foreman through foreman.BearerTransport.
//
// It is a module of its own because github.com/ollama/ollama v0.11.4 requires Go 1.24, and the
// foreman client module stays at Go 1.22 with no dependencies. The client module's test
// TestOfficialOllamaClientModule runs these tests, so `go test ./...` in clients/go covers them.
package ollamacompat
