package main

import "syscall"

// procAttr makes the kernel kill a server -suite started if identityload
// dies without stopping it (a panic, kill -9).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
