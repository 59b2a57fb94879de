package log

import "syscall"

var errENOSPC = syscall.ENOSPC
