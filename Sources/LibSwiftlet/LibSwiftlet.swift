// libswiftlet.so.1 holds SwiftletABI's exported functions; this target exists to give the shared
// library its own link settings (Package.swift), which must not reach SwiftletABI's unit tests.
@_exported import SwiftletABI
