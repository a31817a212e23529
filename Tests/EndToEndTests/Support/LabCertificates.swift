// Test PKI for the lab, made with the openssl command: a CA, Postfix's server certificate
// (CN mx.lab.test), a CA-signed client certificate and a self-signed one with the same CN.
//
// Postfix puts a client certificate's CN in {cert_subject} only when it verifies against
// smtpd_tls_CAfile (the lab CA); the self-signed one must look like no certificate at all.
// P-256 keys: a whole set takes ~50 ms, against ~700 ms for RSA-2048.

import Foundation

/// A certificate and its private key, as PEM files.
struct LabCertificate: Sendable {
    let commonName: String
    let certificatePath: String
    let keyPath: String
}

struct LabCertificates: Sendable {
    let directory: String
    let ca: LabCertificate
    /// Postfix's certificate (CN and DNS name mx.lab.test), signed by the lab CA.
    let server: LabCertificate
    /// Client certificate signed by the lab CA: Postfix verifies it.
    let client: LabCertificate
    /// Self-signed client certificate with the same CN: Postfix does not verify it.
    let selfSignedClient: LabCertificate

    static let caName = "Connector Lab CA"
    static let serverName = "mx.lab.test"

    /// Creates the whole set in `directory` (created if needed).
    static func generate(in directory: String, clientCommonName: String = "relay.contoso.com") throws -> LabCertificates {
        let openssl = try LabProcess.require("openssl", package: "openssl")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let ca = LabCertificate(commonName: caName, certificatePath: directory + "/ca.crt", keyPath: directory + "/ca.key")
        try LabProcess.check([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                              "-nodes", "-keyout", ca.keyPath, "-out", ca.certificatePath, "-days", "3650",
                              "-subj", "/CN=\(caName)",
                              "-addext", "basicConstraints=critical,CA:TRUE",
                              "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        let set = LabCertificates(
            directory: directory,
            ca: ca,
            server: try issue(commonName: serverName, name: "server", in: directory, ca: ca,
                              extensions: "subjectAltName=DNS:\(serverName)\nextendedKeyUsage=serverAuth\n"),
            client: try issue(commonName: clientCommonName, name: "client", in: directory, ca: ca,
                              extensions: "extendedKeyUsage=clientAuth\n"),
            selfSignedClient: try selfSigned(commonName: clientCommonName, name: "selfsigned", in: directory))
        // Postfix's daemons and the smtp client tools read these as other users.
        for file in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            chmod(directory + "/" + file, 0o644)
        }
        return set
    }

    /// Another client certificate signed by the lab CA, e.g. for a second on-premises server.
    func issueClient(commonName: String, name: String) throws -> LabCertificate {
        let certificate = try Self.issue(commonName: commonName, name: name, in: directory, ca: ca,
                                         extensions: "extendedKeyUsage=clientAuth\n")
        chmod(certificate.certificatePath, 0o644)
        chmod(certificate.keyPath, 0o644)
        return certificate
    }

    /// Another self-signed client certificate.
    func selfSignedClient(commonName: String, name: String) throws -> LabCertificate {
        let certificate = try Self.selfSigned(commonName: commonName, name: name, in: directory)
        chmod(certificate.certificatePath, 0o644)
        chmod(certificate.keyPath, 0o644)
        return certificate
    }

    private static func issue(commonName: String, name: String, in directory: String, ca: LabCertificate,
                              extensions: String) throws -> LabCertificate {
        let openssl = try LabProcess.require("openssl", package: "openssl")
        let certificate = LabCertificate(commonName: commonName, certificatePath: "\(directory)/\(name).crt",
                                         keyPath: "\(directory)/\(name).key")
        let request = "\(directory)/\(name).csr"
        let extensionFile = "\(directory)/\(name).ext"
        try extensions.write(toFile: extensionFile, atomically: true, encoding: .utf8)
        try LabProcess.check([openssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                              "-keyout", certificate.keyPath, "-out", request, "-subj", "/CN=\(commonName)"])
        try LabProcess.check([openssl, "x509", "-req", "-in", request, "-CA", ca.certificatePath, "-CAkey", ca.keyPath,
                              "-set_serial", "0x" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16),
                              "-out", certificate.certificatePath, "-days", "3650", "-extfile", extensionFile])
        return certificate
    }

    private static func selfSigned(commonName: String, name: String, in directory: String) throws -> LabCertificate {
        let openssl = try LabProcess.require("openssl", package: "openssl")
        let certificate = LabCertificate(commonName: commonName, certificatePath: "\(directory)/\(name).crt",
                                         keyPath: "\(directory)/\(name).key")
        try LabProcess.check([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                              "-nodes", "-keyout", certificate.keyPath, "-out", certificate.certificatePath,
                              "-days", "3650", "-subj", "/CN=\(commonName)"])
        return certificate
    }
}
