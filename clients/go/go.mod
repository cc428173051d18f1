module github.com/foreman-dev/foreman/clients/go

go 1.22
