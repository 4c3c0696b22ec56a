using System.Text.Json;
using TauCluster.Engine;
using TauCluster.Grains;

namespace TauCluster.Client;

/// <summary>
/// What several commands share: the cluster connection options and the connection they make, the sampling options,
/// session ids, comma-separated lists, an empty <c>--out</c>, and progress output.
/// </summary>
internal static class CommandSupport
{
    /// <summary>Mutual TLS to the gateways: <see cref="Tls"/> reads these (or TAU_TLS_CERT, TAU_TLS_KEY and TAU_TLS_CA).</summary>
    public static readonly string[] TlsOptionNames = ["--tls-cert", "--tls-key", "--tls-ca"];

    /// <summary>Where the sessions run: <see cref="Connect"/> reads these (declared after what they include: fields initialise in order).</summary>
    public static readonly string[] ClusterOptionNames = ["--cluster", "--cluster-id", "--service-id", "--device", .. TlsOptionNames];

    /// <summary>How tokens are chosen: <see cref="Sampling"/> reads these.</summary>
    public static readonly string[] SamplingOptionNames =
        ["--temperature", "--top-k", "--top-p", "--seed", "--presence-penalty", "--frequency-penalty", "--repetition-penalty", "--min-p"];

    public static readonly JsonSerializerOptions SnakeCase = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public sealed record OpenCluster(ClusterConnection Connection, string Model, string? Domain) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => Connection.DisposeAsync();
    }

    /// <summary>
    /// Embedded: a model or domain given as a directory is configured on the embedded silo under its folder name,
    /// so that sessions still name it (a silo never reads a path from a request). Remote: names only.
    /// </summary>
    public static async Task<OpenCluster> Connect(ParsedArguments a, CancellationToken cancellation, bool resolveModel = true)
    {
        string model = a.String("--model") ?? ModelStore.DefaultName;
        string? domain = a.String("--domain");
        if (a.String("--cluster") is { } address)
        {
            if (a.Has("--device"))
                throw new UsageException("--device chooses the embedded silo's device; a cluster's silos choose theirs (Tau:Device)");
            foreach (var (option, value) in new[] { ("--model", model), ("--domain", domain) })
                if (value is not null && !Names.IsValid(value))
                    throw new UsageException($"with --cluster, {option} must name a {option[2..]} configured on the silos, not a path ('{value}')");
            var remote = await ClusterConnection.Connect(address, a.String("--cluster-id") ?? "taucluster", a.String("--service-id") ?? "taucluster",
                Tls(a), cancellation);
            return new OpenCluster(remote, model, domain);
        }

        if (TlsOptionNames.FirstOrDefault(a.Has) is { } tlsFlag)
            throw new UsageException($"{tlsFlag} applies to a cluster's gateways (--cluster); the embedded silo takes no connections");
        var options = EmbeddedOptions();
        options.Device = Device(a).Name;
        if (resolveModel)
        {
            model = LocalName("model", model, options.Models);
            if (domain is not null) domain = LocalName("domain", domain, options.Manifolds);
            if (model == ModelStore.PaperName) PaperModel.EnsureCreated(options.DataDirectory, message => Progress(message));
        }
        Progress("starting an embedded silo …");
        return new OpenCluster(await ClusterConnection.StartEmbedded(options, cancellation), model, domain);
    }

    /// <summary>
    /// The client certificate, its key and the cluster's CA, from <c>--tls-cert</c>, <c>--tls-key</c> and <c>--tls-ca</c>,
    /// each defaulting to its environment variable, so that a shell configured once reaches a TLS cluster every time.
    /// </summary>
    public static ClusterTlsOptions Tls(ParsedArguments a) => new()
    {
        CertificateFile = a.String("--tls-cert") ?? Environment.GetEnvironmentVariable("TAU_TLS_CERT"),
        KeyFile = a.String("--tls-key") ?? Environment.GetEnvironmentVariable("TAU_TLS_KEY"),
        CaFile = a.String("--tls-ca") ?? Environment.GetEnvironmentVariable("TAU_TLS_CA"),
    };

    /// <summary>How the errors of <see cref="ClusterTls.Load"/> name the settings: by the flags a user of tau gives.</summary>
    public static string TlsFlag(string setting) => setting switch
    {
        nameof(ClusterTlsOptions.CertificateFile) => "--tls-cert (TAU_TLS_CERT)",
        nameof(ClusterTlsOptions.KeyFile) => "--tls-key (TAU_TLS_KEY)",
        _ => "--tls-ca (TAU_TLS_CA)",
    };

    /// <summary><c>--device</c>: cpu (the default), cuda, cuda:N or ilgpu-cpu.</summary>
    public static ComputeDevice Device(ParsedArguments a) => ComputeDevice.Parse(a.String("--device"));

    /// <summary>An embedded silo's settings: models and manifolds by name under $TAU_HOME.</summary>
    public static TauClusterOptions EmbeddedOptions()
    {
        // Roots only where they exist: a fresh $TAU_HOME has none yet, and a silo refuses a root that is not there.
        var options = new TauClusterOptions();
        var models = Path.Combine(options.DataDirectory, "models");
        var manifolds = Path.Combine(options.DataDirectory, "manifolds");
        options.ModelsRoot = Directory.Exists(models) ? models : null;
        options.ManifoldsRoot = Directory.Exists(manifolds) ? manifolds : null;
        return options;
    }

    /// <summary>A name for what the user gave: a plain name as it is, a directory configured under a name of its own.</summary>
    public static string LocalName(string kind, string nameOrDirectory, Dictionary<string, string> configured)
    {
        if (!Directory.Exists(nameOrDirectory))
            return Names.IsValid(nameOrDirectory) ? nameOrDirectory
                : throw new UnknownNameException(kind, nameOrDirectory, "not a directory, nor a plain name");
        // The folder name plus a hash of the full path: two folders of the same name are two models, and a session that
        // ran on one refuses the other ("already runs model …") instead of replaying its tokens on other weights.
        var full = Path.GetFullPath(nameOrDirectory).TrimEnd(Path.DirectorySeparatorChar);
        var folder = Path.GetFileName(full);
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(full)))[..8];
        var name = Names.IsValid($"{folder}-{hash}") ? $"{folder}-{hash}" : $"local-{kind}-{hash}";
        configured[name] = full;
        return name;
    }

    /// <summary>The model a <c>tau bench</c> command times (<c>paper</c> by default): what the embedded silo would serve under the same name, from the same model store.</summary>
    public static TauModel BenchModel(TauClusterOptions options, string? nameOrDirectory, out string name)
    {
        name = LocalName("model", nameOrDirectory ?? ModelStore.PaperName, options.Models);
        return new ModelStore(Microsoft.Extensions.Options.Options.Create(options), Microsoft.Extensions.Logging.Abstractions.NullLogger<ModelStore>.Instance).Get(name);
    }

    public static SamplingSettings Sampling(ParsedArguments a)
    {
        var sampling = new SamplingSettings(a.Double("--temperature") ?? 0.8, a.Int("--top-k") ?? 0, a.Double("--top-p") ?? 1.0, a.ULong("--seed") ?? 0,
            a.Double("--presence-penalty") ?? 0, a.Double("--frequency-penalty") ?? 0, a.Double("--repetition-penalty"), a.Double("--min-p") ?? 0);
        sampling.Validate();   // invalid options fail here, before any cluster starts
        return sampling;
    }

    public static string SessionId(ParsedArguments a) => a.String("--session") is { } id ? Names.Require("session", id) : NewSessionId();

    public static string NewSessionId() => $"s-{Guid.NewGuid():N}"[..14];

    /// <summary>A count given as <paramref name="option"/>: at least 1.</summary>
    public static int AtLeastOne(int value, string option) =>
        value >= 1 ? value : throw new UsageException($"{option} {value} must be at least 1");

    /// <summary>What the bench commands' lists must be, in <see cref="List"/>'s message when an item does not parse.</summary>
    public const string NumberList = "a comma-separated list of numbers";

    /// <summary><paramref name="option"/>'s comma-separated items; <paramref name="expected"/> says what they must be when one does not parse.</summary>
    public static T[] List<T>(string text, Func<string, T> parse, string option, string expected)
    {
        try
        {
            var items = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(parse).ToArray();
            return items.Length > 0 ? items : throw new UsageException($"{option} is empty");
        }
        catch (Exception e) when (e is FormatException or OverflowException)
        {
            throw new UsageException($"{option} '{text}' must be {expected}");
        }
    }

    /// <summary>The required <c>--out</c>: a directory that does not exist yet, or an empty one.</summary>
    public static string NewOutputDirectory(ParsedArguments a)
    {
        string output = a.Required("--out");
        return OutputDirectory.NotEmptyError(output) is { } notEmpty ? throw new UsageException(notEmpty) : output;
    }

    public static TaumodeKind ParseTaumode(string text)
    {
        try
        {
            return ModelConfig.ParseTaumode(text, "--tau-mode");
        }
        catch (ModelFormatException e)
        {
            throw new UsageException(e.Message);
        }
    }

    /// <summary>Progress for a person watching: on stderr, and only when stderr is a terminal unless it is the summary.</summary>
    public static void Progress(string message, bool always = false)
    {
        if (always || !Console.IsErrorRedirected) Console.Error.WriteLine(message);
    }
}
