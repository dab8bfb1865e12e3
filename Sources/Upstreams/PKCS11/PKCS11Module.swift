import CPKCS11
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A PKCS#11 return value other than `CKR_OK`, with the function that returned it.
public struct PKCS11Error: Error, Sendable, Equatable, CustomStringConvertible {
    public let rv: CK_RV
    public let function: String

    public init(_ rv: CK_RV, _ function: String) { self.rv = rv; self.function = function }

    public var name: String { Self.names[rv] ?? "CKR_0x" + String(rv, radix: 16, uppercase: true) }
    public var description: String { "\(function): \(name)" }

    /// The session handle is gone or useless: drop it, open another and try again.
    var invalidatesSession: Bool {
        [CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN, CKR_DEVICE_REMOVED,
         CKR_DEVICE_ERROR, CKR_TOKEN_NOT_PRESENT, CKR_TOKEN_NOT_RECOGNIZED, CKR_SLOT_ID_INVALID,
         CKR_CRYPTOKI_NOT_INITIALIZED, CKR_OPERATION_ACTIVE, CKR_KEY_HANDLE_INVALID, CKR_OBJECT_HANDLE_INVALID,
         CKR_SESSION_COUNT, CKR_DEVICE_MEMORY].contains(rv)
    }

    /// The module itself was finalised (by someone else in this process) or the token was
    /// pulled: initialise again and look the slot up again by its label.
    var needsReinitialisation: Bool {
        [CKR_CRYPTOKI_NOT_INITIALIZED, CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, CKR_TOKEN_NOT_RECOGNIZED,
         CKR_SLOT_ID_INVALID, CKR_DEVICE_ERROR].contains(rv)
    }

    /// Every session of this application is likely gone (closed behind our back, module
    /// finalised): the other workers' handles are void too, and their numbers may be reused.
    var voidsAllSessions: Bool {
        needsReinitialisation || rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED
    }

    /// Object handles (keys, certificates) must be looked up again.
    var invalidatesHandles: Bool {
        needsReinitialisation || rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID
    }

    static let names: [CK_RV: String] = [
        CKR_CANCEL: "CKR_CANCEL", CKR_HOST_MEMORY: "CKR_HOST_MEMORY", CKR_SLOT_ID_INVALID: "CKR_SLOT_ID_INVALID",
        CKR_GENERAL_ERROR: "CKR_GENERAL_ERROR", CKR_FUNCTION_FAILED: "CKR_FUNCTION_FAILED",
        CKR_ARGUMENTS_BAD: "CKR_ARGUMENTS_BAD", CKR_ATTRIBUTE_TYPE_INVALID: "CKR_ATTRIBUTE_TYPE_INVALID",
        CKR_ATTRIBUTE_VALUE_INVALID: "CKR_ATTRIBUTE_VALUE_INVALID", CKR_DATA_INVALID: "CKR_DATA_INVALID",
        CKR_DATA_LEN_RANGE: "CKR_DATA_LEN_RANGE", CKR_DEVICE_ERROR: "CKR_DEVICE_ERROR",
        CKR_DEVICE_MEMORY: "CKR_DEVICE_MEMORY", CKR_DEVICE_REMOVED: "CKR_DEVICE_REMOVED",
        CKR_FUNCTION_NOT_SUPPORTED: "CKR_FUNCTION_NOT_SUPPORTED", CKR_KEY_HANDLE_INVALID: "CKR_KEY_HANDLE_INVALID",
        CKR_KEY_SIZE_RANGE: "CKR_KEY_SIZE_RANGE", CKR_KEY_TYPE_INCONSISTENT: "CKR_KEY_TYPE_INCONSISTENT",
        CKR_MECHANISM_INVALID: "CKR_MECHANISM_INVALID", CKR_MECHANISM_PARAM_INVALID: "CKR_MECHANISM_PARAM_INVALID",
        CKR_OBJECT_HANDLE_INVALID: "CKR_OBJECT_HANDLE_INVALID", CKR_OPERATION_ACTIVE: "CKR_OPERATION_ACTIVE",
        CKR_OPERATION_NOT_INITIALIZED: "CKR_OPERATION_NOT_INITIALIZED", CKR_PIN_INCORRECT: "CKR_PIN_INCORRECT",
        CKR_PIN_LOCKED: "CKR_PIN_LOCKED", CKR_SESSION_CLOSED: "CKR_SESSION_CLOSED",
        CKR_SESSION_COUNT: "CKR_SESSION_COUNT", CKR_SESSION_HANDLE_INVALID: "CKR_SESSION_HANDLE_INVALID",
        CKR_SESSION_READ_ONLY: "CKR_SESSION_READ_ONLY", CKR_TEMPLATE_INCOMPLETE: "CKR_TEMPLATE_INCOMPLETE",
        CKR_TEMPLATE_INCONSISTENT: "CKR_TEMPLATE_INCONSISTENT", CKR_TOKEN_NOT_PRESENT: "CKR_TOKEN_NOT_PRESENT",
        CKR_TOKEN_NOT_RECOGNIZED: "CKR_TOKEN_NOT_RECOGNIZED", CKR_TOKEN_WRITE_PROTECTED: "CKR_TOKEN_WRITE_PROTECTED",
        CKR_USER_ALREADY_LOGGED_IN: "CKR_USER_ALREADY_LOGGED_IN", CKR_USER_NOT_LOGGED_IN: "CKR_USER_NOT_LOGGED_IN",
        CKR_USER_PIN_NOT_INITIALIZED: "CKR_USER_PIN_NOT_INITIALIZED", CKR_BUFFER_TOO_SMALL: "CKR_BUFFER_TOO_SMALL",
        CKR_CRYPTOKI_NOT_INITIALIZED: "CKR_CRYPTOKI_NOT_INITIALIZED",
        CKR_CRYPTOKI_ALREADY_INITIALIZED: "CKR_CRYPTOKI_ALREADY_INITIALIZED",
        CKR_SIGNATURE_INVALID: "CKR_SIGNATURE_INVALID", CKR_SIGNATURE_LEN_RANGE: "CKR_SIGNATURE_LEN_RANGE",
    ]
}

/// Loading a module failed before any PKCS#11 call could be made.
public struct PKCS11LoadError: Error, Sendable, CustomStringConvertible {
    public let description: String
}

/// One attribute for a template: its type and its value bytes.
public struct PKCS11Attribute: Sendable {
    public let type: CK_ATTRIBUTE_TYPE
    public let value: [UInt8]

    public init(_ type: CK_ATTRIBUTE_TYPE, bytes: [UInt8]) { self.type = type; self.value = bytes }
    public init(_ type: CK_ATTRIBUTE_TYPE, _ flag: Bool) { self.init(type, bytes: [flag ? 1 : 0]) }
    public init(_ type: CK_ATTRIBUTE_TYPE, ulong: CK_ULONG) {
        self.init(type, bytes: withUnsafeBytes(of: ulong) { Array($0) })
    }
    public init(_ type: CK_ATTRIBUTE_TYPE, string: String) { self.init(type, bytes: Array(string.utf8)) }
}

/// The function list of one dlopen'ed PKCS#11 module. This type is the only place where the
/// C pointers live; the module is thread-safe once initialised with `CKF_OS_LOCKING_OK`, and
/// each session handle is used by one thread at a time (see `PKCS11Token`).
public final class PKCS11Module: @unchecked Sendable {
    public let path: String
    private let handle: UnsafeMutableRawPointer
    private let functions: UnsafeMutablePointer<CK_FUNCTION_LIST>

    public init(path: String) throws {
        self.path = path
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown reason"
            throw PKCS11LoadError(description: "cannot load PKCS#11 module \(path): \(reason)")
        }
        guard let symbol = dlsym(handle, "C_GetFunctionList") else {
            dlclose(handle)
            throw PKCS11LoadError(description: "\(path) is not a PKCS#11 module (no C_GetFunctionList)")
        }
        typealias GetFunctionList = @convention(c) (UnsafeMutablePointer<UnsafeMutablePointer<CK_FUNCTION_LIST>?>?) -> CK_RV
        let getList = unsafeBitCast(symbol, to: GetFunctionList.self)
        var list: UnsafeMutablePointer<CK_FUNCTION_LIST>?
        let rv = getList(&list)
        guard rv == CKR_OK, let list else {
            dlclose(handle)
            throw PKCS11LoadError(description: "\(path): C_GetFunctionList failed (\(PKCS11Error(rv, "C_GetFunctionList").name))")
        }
        self.handle = handle
        self.functions = list
    }

    deinit {
        // Modules keep global state; unloading one that may still be in use is worse than a leak.
    }

    private var f: CK_FUNCTION_LIST { functions.pointee }

    @inline(__always)
    private func check(_ rv: CK_RV, _ name: String) throws(PKCS11Error) {
        if rv != CKR_OK { throw PKCS11Error(rv, name) }
    }

    // MARK: Module and slots

    /// `C_Initialize` with OS locking; "already initialised" (by another user of the module in
    /// this process) is fine.
    public func initialize() throws(PKCS11Error) {
        var args = CK_C_INITIALIZE_ARGS()
        args.flags = CKF_OS_LOCKING_OK
        let rv = withUnsafeMutablePointer(to: &args) { f.C_Initialize!(UnsafeMutableRawPointer($0)) }
        if rv == CKR_CRYPTOKI_ALREADY_INITIALIZED { return }
        try check(rv, "C_Initialize")
    }

    public func finalize() throws(PKCS11Error) {
        try check(f.C_Finalize!(nil), "C_Finalize")
    }

    /// Slots with a token present, and each token's label (trailing blanks removed).
    public func tokens() throws(PKCS11Error) -> [(slot: CK_SLOT_ID, label: String, serial: String)] {
        var count: CK_ULONG = 0
        try check(f.C_GetSlotList!(1, nil, &count), "C_GetSlotList")
        var slots = [CK_SLOT_ID](repeating: 0, count: Int(count))
        if count > 0 { try check(f.C_GetSlotList!(1, &slots, &count), "C_GetSlotList") }
        var result = [(CK_SLOT_ID, String, String)]()
        for slot in slots.prefix(Int(count)) {
            var info = CK_TOKEN_INFO()
            let rv = f.C_GetTokenInfo!(slot, &info)
            if rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_TOKEN_NOT_RECOGNIZED { continue }
            try check(rv, "C_GetTokenInfo")
            let label = withUnsafeBytes(of: info.label) { Self.blankPadded($0) }
            let serial = withUnsafeBytes(of: info.serialNumber) { Self.blankPadded($0) }
            result.append((slot, label, serial))
        }
        return result
    }

    static func blankPadded(_ bytes: UnsafeRawBufferPointer) -> String {
        var s = String(decoding: bytes, as: UTF8.self)
        while s.hasSuffix(" ") || s.hasSuffix("\u{0}") { s.removeLast() }
        return s
    }

    // MARK: Sessions

    public func openSession(slot: CK_SLOT_ID, readWrite: Bool = false) throws(PKCS11Error) -> CK_SESSION_HANDLE {
        var session: CK_SESSION_HANDLE = 0
        let flags = CKF_SERIAL_SESSION | (readWrite ? CKF_RW_SESSION : 0)
        try check(f.C_OpenSession!(slot, flags, nil, nil, &session), "C_OpenSession")
        return session
    }

    public func closeSession(_ session: CK_SESSION_HANDLE) {
        _ = f.C_CloseSession!(session)
    }

    /// Closes every session of this application on the slot (and so logs it out).
    public func closeAllSessions(slot: CK_SLOT_ID) throws(PKCS11Error) {
        try check(f.C_CloseAllSessions!(slot), "C_CloseAllSessions")
    }

    /// `C_Login` as the user; already logged in (login state is per application) is fine.
    public func login(_ session: CK_SESSION_HANDLE, pin: String) throws(PKCS11Error) {
        var bytes = Array(pin.utf8)
        let rv = f.C_Login!(session, CKU_USER, &bytes, CK_ULONG(bytes.count))
        for i in bytes.indices { bytes[i] = 0 }
        if rv == CKR_USER_ALREADY_LOGGED_IN { return }
        try check(rv, "C_Login")
    }

    public func logout(_ session: CK_SESSION_HANDLE) throws(PKCS11Error) {
        try check(f.C_Logout!(session), "C_Logout")
    }

    // MARK: Objects

    public func findObjects(_ session: CK_SESSION_HANDLE, _ template: [PKCS11Attribute], max: Int = 64) throws(PKCS11Error)
        -> [CK_OBJECT_HANDLE] {
        var rv: CK_RV = CKR_OK
        Self.withTemplate(template) { attrs, count in rv = f.C_FindObjectsInit!(session, attrs, count) }
        try check(rv, "C_FindObjectsInit")
        var found = [CK_OBJECT_HANDLE](repeating: 0, count: max)
        var n: CK_ULONG = 0
        rv = f.C_FindObjects!(session, &found, CK_ULONG(max), &n)
        _ = f.C_FindObjectsFinal!(session)
        try check(rv, "C_FindObjects")
        return Array(found.prefix(Int(n)))
    }

    /// The values of `types` on one object; nil for an attribute the object does not have.
    public func attributes(_ session: CK_SESSION_HANDLE, _ object: CK_OBJECT_HANDLE, _ types: [CK_ATTRIBUTE_TYPE]) throws(PKCS11Error)
        -> [CK_ATTRIBUTE_TYPE: [UInt8]] {
        var result = [CK_ATTRIBUTE_TYPE: [UInt8]]()
        for type in types {
            var attribute = CK_ATTRIBUTE(type: type, pValue: nil, ulValueLen: 0)
            let rv = f.C_GetAttributeValue!(session, object, &attribute, 1)
            if rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE { continue }
            try check(rv, "C_GetAttributeValue")
            if attribute.ulValueLen == CK_ULONG.max { continue }
            var value = [UInt8](repeating: 0, count: Int(attribute.ulValueLen))
            let rv2 = value.withUnsafeMutableBytes { buffer -> CK_RV in
                attribute.pValue = buffer.baseAddress
                return f.C_GetAttributeValue!(session, object, &attribute, 1)
            }
            try check(rv2, "C_GetAttributeValue")
            result[type] = Array(value.prefix(Int(attribute.ulValueLen)))
        }
        return result
    }

    public func createObject(_ session: CK_SESSION_HANDLE, _ template: [PKCS11Attribute]) throws(PKCS11Error) -> CK_OBJECT_HANDLE {
        var object: CK_OBJECT_HANDLE = 0
        var rv: CK_RV = CKR_OK
        Self.withTemplate(template) { attrs, count in rv = f.C_CreateObject!(session, attrs, count, &object) }
        try check(rv, "C_CreateObject")
        return object
    }

    public func destroyObject(_ session: CK_SESSION_HANDLE, _ object: CK_OBJECT_HANDLE) throws(PKCS11Error) {
        try check(f.C_DestroyObject!(session, object), "C_DestroyObject")
    }

    public func generateKeyPair(_ session: CK_SESSION_HANDLE, mechanism: CK_MECHANISM_TYPE, publicTemplate: [PKCS11Attribute],
                                privateTemplate: [PKCS11Attribute]) throws(PKCS11Error) -> (public: CK_OBJECT_HANDLE, private: CK_OBJECT_HANDLE) {
        var mech = CK_MECHANISM(mechanism: mechanism, pParameter: nil, ulParameterLen: 0)
        var pub: CK_OBJECT_HANDLE = 0, priv: CK_OBJECT_HANDLE = 0
        var rv: CK_RV = CKR_OK
        Self.withTemplate(publicTemplate) { pubAttrs, pubCount in
            Self.withTemplate(privateTemplate) { privAttrs, privCount in
                rv = f.C_GenerateKeyPair!(session, &mech, pubAttrs, pubCount, privAttrs, privCount, &pub, &priv)
            }
        }
        try check(rv, "C_GenerateKeyPair")
        return (pub, priv)
    }

    // MARK: Signing

    /// `C_SignInit` + `C_Sign` in one go. `parameter` is the mechanism parameter's bytes (e.g.
    /// a `CK_RSA_PKCS_PSS_PARAMS`), `maxLength` an upper bound of the signature size.
    public func sign(_ session: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE, mechanism: CK_MECHANISM_TYPE, parameter: [UInt8]?,
                     data: [UInt8], maxLength: Int) throws(PKCS11Error) -> [UInt8] {
        var parameterBytes = parameter ?? []
        let rv = parameterBytes.withUnsafeMutableBytes { p -> CK_RV in
            var mech = CK_MECHANISM(mechanism: mechanism, pParameter: parameter == nil ? nil : p.baseAddress,
                                    ulParameterLen: CK_ULONG(p.count))
            return f.C_SignInit!(session, &mech, key)
        }
        try check(rv, "C_SignInit")
        var input = data
        var output = [UInt8](repeating: 0, count: maxLength)
        var length = CK_ULONG(maxLength)
        try check(f.C_Sign!(session, &input, CK_ULONG(input.count), &output, &length), "C_Sign")
        return Array(output.prefix(Int(length)))
    }

    // MARK: Templates

    /// Lays `template` out as a C `CK_ATTRIBUTE` array whose values live for the call.
    static func withTemplate(_ template: [PKCS11Attribute], _ body: (UnsafeMutablePointer<CK_ATTRIBUTE>?, CK_ULONG) -> Void) {
        let total = template.reduce(0) { $0 + max($1.value.count, 1) }
        let storage = UnsafeMutableRawPointer.allocate(byteCount: max(total, 1), alignment: 16)
        defer { storage.deallocate() }
        var attributes = [CK_ATTRIBUTE]()
        attributes.reserveCapacity(template.count)
        var offset = 0
        for a in template {
            let p = storage + offset
            a.value.withUnsafeBytes { src in
                if let base = src.baseAddress { p.copyMemory(from: base, byteCount: src.count) }
            }
            attributes.append(CK_ATTRIBUTE(type: a.type, pValue: a.value.isEmpty ? nil : p, ulValueLen: CK_ULONG(a.value.count)))
            offset += max(a.value.count, 1)
        }
        attributes.withUnsafeMutableBufferPointer { buffer in body(buffer.baseAddress, CK_ULONG(buffer.count)) }
    }
}

extension [UInt8] {
    /// A `CK_ULONG` attribute value in the platform's byte order.
    var ckULong: CK_ULONG? {
        guard count == MemoryLayout<CK_ULONG>.size else { return nil }
        return withUnsafeBytes { $0.loadUnaligned(as: CK_ULONG.self) }
    }
}
