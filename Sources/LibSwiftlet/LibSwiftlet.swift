// libswiftlet.so.1 holds the exported functions of SwiftletABI (machine level) and SwiftletVMABI
// (VM level); this target exists to give the shared library its own link settings
// (Package.swift), which must not reach the unit tests of either.
@_exported import SwiftletABI
@_exported import SwiftletVMABI
