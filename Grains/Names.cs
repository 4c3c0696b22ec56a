using System.Text.RegularExpressions;

namespace TauCluster.Grains;

/// <summary>
/// Names that users give (models, domains, sessions) are plain names, resolved inside configured roots:
/// nothing a request says is ever read as a path.
/// </summary>
public static partial class Names
{
    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    private static partial Regex PlainName();

    public static bool IsValid(string? name) => name is not null && PlainName().IsMatch(name) && !name.Contains("..");

    public static string Require(string kind, string? name) =>
        IsValid(name) ? name! : throw new InvalidOptionsException($"{kind} name '{name}' must be 1–128 letters, digits, '.', '_' or '-', starting with a letter or digit");

    /// <summary>The directory <paramref name="name"/> in <paramref name="root"/>, if it exists and really lies inside it.</summary>
    public static string? InsideRoot(string? root, string name)
    {
        if (root is null || !IsValid(name)) return null;
        var fullRoot = Path.GetFullPath(root).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        var candidate = Path.GetFullPath(Path.Combine(fullRoot, name));
        return candidate.StartsWith(fullRoot, StringComparison.Ordinal) && Directory.Exists(candidate) ? candidate : null;
    }
}
