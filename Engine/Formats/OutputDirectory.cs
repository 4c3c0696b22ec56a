namespace TauCluster.Engine;

/// <summary>
/// The one rule for a command's --out: it may exist, but only empty, so that nothing written there mixes with what was
/// there before. Each caller throws its own exception type with the message this returns.
/// </summary>
public static class OutputDirectory
{
    /// <summary>
    /// "--out {directory} exists and is not empty" where it holds an entry not named in <paramref name="ignoring"/>
    /// (names a caller itself leaves there, such as its log); null where it is missing or holds nothing else.
    /// </summary>
    public static string? NotEmptyError(string directory, params ReadOnlySpan<string> ignoring)
    {
        if (!Directory.Exists(directory)) return null;
        foreach (string entry in Directory.EnumerateFileSystemEntries(directory))
            if (!ignoring.Contains(Path.GetFileName(entry))) return $"--out {directory} exists and is not empty";
        return null;
    }
}
