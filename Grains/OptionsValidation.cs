using System.Collections;
using System.Reflection;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;
using TauCluster.Engine;

namespace TauCluster.Grains;

/// <summary>
/// Configuration keys that bind to nothing. The binder skips them silently, so a typo such as <c>Tau:Http:ApiKey</c>
/// would leave the API open; a silo names each one, with the key it most likely meant.
/// </summary>
public static class ConfigurationKeys
{
    /// <param name="sections">Sections under <paramref name="section"/> that another options class binds (Tau:Http).</param>
    public static IEnumerable<string> Unknown(IConfigurationSection section, Type type, IReadOnlyDictionary<string, Type>? sections = null)
    {
        var known = type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite)
            .ToDictionary(p => p.Name, p => p.PropertyType, StringComparer.OrdinalIgnoreCase);
        foreach (var (key, sectionType) in sections ?? new Dictionary<string, Type>()) known[key] = sectionType;
        foreach (var child in section.GetChildren())
        {
            if (!known.TryGetValue(child.Key, out var childType))
            {
                var nearest = Nearest(child.Key, known.Keys);
                yield return nearest is null ? $"{child.Path} is not a setting" : $"{child.Path} is not a setting (did you mean {section.Path}:{nearest}?)";
            }
            else if (IsSection(childType))
            {
                foreach (var failure in Unknown(child, childType)) yield return failure;
            }
        }
    }

    /// <summary>Options classes bind key by key; strings, arrays and dictionaries take whatever keys they are given.</summary>
    private static bool IsSection(Type type) =>
        type.IsClass && type != typeof(string) && !typeof(IEnumerable).IsAssignableFrom(type);

    /// <summary>The known key fewest edits away, when it is close enough to be a misspelling of it.</summary>
    public static string? Nearest(string key, IEnumerable<string> known) =>
        known.Select(k => (Key: k, Distance: EditDistance(key.ToLowerInvariant(), k.ToLowerInvariant())))
            .Where(c => c.Distance <= Math.Max(2, key.Length / 3))
            .OrderBy(c => c.Distance).ThenBy(c => c.Key, StringComparer.Ordinal)
            .Select(c => c.Key).FirstOrDefault();

    private static int EditDistance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) previous[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }

    /// <summary>The section bound to <typeparamref name="T"/>; a value that does not convert is a failure naming its key.</summary>
    public static T Bind<T>(IConfigurationSection section, List<string> failures) where T : new()
    {
        try
        {
            return section.Get<T>() ?? new T();
        }
        catch (InvalidOperationException e)
        {
            failures.Add(e.Message);   // "Failed to convert configuration value 'x' at 'Tau:MaxBatch' to type 'System.Int32'."
            return new T();
        }
    }
}

/// <summary>The <c>Tau</c> section's values: each out-of-range value is a failure that names its key.</summary>
public sealed class TauClusterOptionsValidator : IValidateOptions<TauClusterOptions>
{
    /// <summary>Every host of grains (the silo, TestingHost, the embedded <c>tau</c>) checks its options before it builds anything.</summary>
    public static void ThrowIfInvalid(TauClusterOptions options)
    {
        var result = new TauClusterOptionsValidator().Validate(null, options);
        if (result.Failed) throw new OptionsValidationException(TauClusterOptions.Section, typeof(TauClusterOptions), result.Failures);
    }

    public ValidateOptionsResult Validate(string? name, TauClusterOptions options)
    {
        var failures = new List<string>();
        void Require(bool valid, string failure)
        {
            if (!valid) failures.Add(failure);
        }
        const string tau = TauClusterOptions.Section;
        Require(options.Clustering is "localhost" or "redis", $"{tau}:Clustering = '{options.Clustering}' must be localhost or redis");
        Require(options.Storage is "memory" or "file" or "redis", $"{tau}:Storage = '{options.Storage}' must be memory, file or redis");
        if (options.Clustering == "redis" || options.Storage == "redis")
        {
            try
            {
                StackExchange.Redis.ConfigurationOptions.Parse(options.Redis);
            }
            catch (ArgumentException e)
            {
                failures.Add($"{tau}:Redis = '{options.Redis}' is not a Redis connection string: {e.Message}");
            }
        }
        Require(!string.IsNullOrWhiteSpace(options.ClusterId), $"{tau}:ClusterId must not be empty");
        Require(!string.IsNullOrWhiteSpace(options.ServiceId), $"{tau}:ServiceId must not be empty");
        Require(!string.IsNullOrWhiteSpace(options.DataDirectory), $"{tau}:DataDirectory must not be empty");
        Require(options.SiloPort is >= 1 and <= 65535, $"{tau}:SiloPort = {options.SiloPort} must be a port, 1 to 65535");
        Require(options.GatewayPort is >= 1 and <= 65535, $"{tau}:GatewayPort = {options.GatewayPort} must be a port, 1 to 65535");
        Require(options.SiloPort != options.GatewayPort, $"{tau}:SiloPort and {tau}:GatewayPort must differ (both are {options.SiloPort})");
        Require(options.PrimarySiloPort is null or (>= 1 and <= 65535), $"{tau}:PrimarySiloPort = {options.PrimarySiloPort} must be a port, 1 to 65535");
        Require(options.CheckpointEvery >= 1, $"{tau}:CheckpointEvery = {options.CheckpointEvery} must be at least 1");
        Require(options.ContextBudgetBytes >= 0, $"{tau}:ContextBudgetBytes = {options.ContextBudgetBytes} must not be negative");
        Require(options.MaxBatch >= 1, $"{tau}:MaxBatch = {options.MaxBatch} must be at least 1");
        Require(options.DeviceCacheBytes >= 0, $"{tau}:DeviceCacheBytes = {options.DeviceCacheBytes} must not be negative");
        Require(options.ShutdownTimeout > TimeSpan.Zero, $"{tau}:ShutdownTimeout = {options.ShutdownTimeout} must be positive");
        try
        {
            ComputeDevice.Parse(options.Device);
        }
        catch (InvalidOptionsException e)
        {
            failures.Add($"{tau}:Device: {e.Message}");
        }
        if (options.ModelsRoot is { Length: > 0 } models)
            Require(Directory.Exists(models), $"{tau}:ModelsRoot '{models}' is not a directory");
        if (options.ManifoldsRoot is { Length: > 0 } manifolds)
            Require(Directory.Exists(manifolds), $"{tau}:ManifoldsRoot '{manifolds}' is not a directory");
        foreach (var (model, directory) in options.Models)
        {
            Require(Names.IsValid(model), $"{tau}:Models:{model} is not a valid model name (letters, digits, '.', '_' or '-')");
            Require(File.Exists(Path.Combine(directory, TauModel.ConfigFile)), $"{tau}:Models:{model} = '{directory}' is not a model directory (no {TauModel.ConfigFile})");
        }
        foreach (var (domain, directory) in options.Manifolds)
        {
            Require(Names.IsValid(domain), $"{tau}:Manifolds:{domain} is not a valid domain name (letters, digits, '.', '_' or '-')");
            Require(File.Exists(Path.Combine(directory, Manifold.MetadataFile)), $"{tau}:Manifolds:{domain} = '{directory}' is not a manifold directory (no {Manifold.MetadataFile})");
        }
        if (options.Tls.Enabled)
        {
            try
            {
                ClusterTls.Load(options.Tls).Certificate.Dispose();
            }
            catch (InvalidOptionsException e)
            {
                failures.Add(e.Message);
            }
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
