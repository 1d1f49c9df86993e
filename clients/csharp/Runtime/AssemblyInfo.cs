using System.Runtime.CompilerServices;

// The test runner (clients/csharp/Tests~) checks the frame codec directly.
[assembly: InternalsVisibleTo("FireflyClientTests")]
