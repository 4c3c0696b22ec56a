using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Orleans.Connections.Security;

namespace TauCluster.Grains;

/// <summary>
/// The <c>Tau:Tls</c> section: PEM files for mutual TLS on the cluster's connections (silo to silo, client to gateway).
/// Every party presents a certificate issued by the cluster's CA and accepts only peers whose certificate chains to it.
/// </summary>
public sealed class ClusterTlsOptions
{
    /// <summary>This party's certificate (PEM). It must allow both server and client authentication: a silo is both.</summary>
    public string? CertificateFile { get; set; }

    /// <summary>Its private key (PEM, unencrypted).</summary>
    public string? KeyFile { get; set; }

    /// <summary>The cluster's certificate authority (PEM): peers are trusted when their certificate chains to it.</summary>
    public string? CaFile { get; set; }

    public bool Enabled => !string.IsNullOrEmpty(CertificateFile) || !string.IsNullOrEmpty(KeyFile) || !string.IsNullOrEmpty(CaFile);
}

public static class ClusterTls
{
    /// <summary>The certificate with its key, and the authority; a missing or unreadable file is an <see cref="InvalidOptionsException"/>.</summary>
    /// <param name="nameOf">How the user spelled each setting (a configuration key, or a command-line flag), for the errors.</param>
    public static (X509Certificate2 Certificate, X509Certificate2Collection Authority) Load(ClusterTlsOptions options, Func<string, string>? nameOf = null)
    {
        nameOf ??= key => $"Tau:Tls:{key}";
        string Required(string? file, string key) =>
            string.IsNullOrEmpty(file) ? throw new InvalidOptionsException($"{nameOf(key)} is required with TLS (certificate, key and CA)")
            : File.Exists(file) ? file : throw new InvalidOptionsException($"{nameOf(key)} '{file}' does not exist");
        var certificateFile = Required(options.CertificateFile, nameof(options.CertificateFile));
        var keyFile = Required(options.KeyFile, nameof(options.KeyFile));
        var caFile = Required(options.CaFile, nameof(options.CaFile));
        X509Certificate2 certificate;
        try
        {
            using var pem = X509Certificate2.CreateFromPemFile(certificateFile, keyFile);
            // A key loaded from PEM is ephemeral; SslStream needs it in a form it can hand to the platform's TLS.
            certificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), password: null);
        }
        catch (CryptographicException e)
        {
            throw new InvalidOptionsException($"{nameOf(nameof(options.CertificateFile))} '{certificateFile}' with {nameOf(nameof(options.KeyFile))} '{keyFile}': {e.Message}");
        }
        var authority = new X509Certificate2Collection();
        try
        {
            authority.ImportFromPemFile(caFile);
        }
        catch (CryptographicException e)
        {
            throw new InvalidOptionsException($"{nameOf(nameof(options.CaFile))} '{caFile}': {e.Message}");
        }
        if (authority.Count == 0) throw new InvalidOptionsException($"{nameOf(nameof(options.CaFile))} '{caFile}' holds no certificate");
        if (!IssuedBy(certificate, authority))
            throw new InvalidOptionsException($"{nameOf(nameof(options.CertificateFile))} '{certificateFile}' is not issued by the CA in '{caFile}' (or has expired)");
        return (certificate, authority);
    }

    /// <summary>
    /// Mutual authentication against the cluster's CA. Host names are not checked: silos are reached at addresses the
    /// membership table gives, and what makes a peer a member is a certificate from the cluster's CA.
    /// </summary>
    public static void Configure(TlsOptions tls, X509Certificate2 certificate, X509Certificate2Collection authority)
    {
        tls.LocalCertificate = certificate;
        tls.RemoteCertificateMode = RemoteCertificateMode.RequireCertificate;
        tls.ClientCertificateMode = RemoteCertificateMode.RequireCertificate;
        tls.RemoteCertificateValidation = (remote, _, _) => IssuedBy(remote, authority);
    }

    public static bool IssuedBy(X509Certificate2 certificate, X509Certificate2Collection authority)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(authority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;   // a development CA publishes no revocation list
        return chain.Build(certificate);
    }

    /// <summary>Presents this client's certificate to the gateways and accepts only gateways the cluster's CA issued.</summary>
    public static IClientBuilder UseTauTls(this IClientBuilder builder, ClusterTlsOptions options, Func<string, string>? nameOf = null)
    {
        if (!options.Enabled) return builder;
        var (certificate, authority) = Load(options, nameOf);
        return builder.UseTls(certificate, tls => Configure(tls, certificate, authority));
    }
}
