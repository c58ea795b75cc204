// Package jvm launches the Java side of the project (jvm-reader's classes) as real
// separate processes, for cross-process tests, benches and the demo.
package jvm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Flags every JVM of the project needs (Arrow Java's memory access on Java 17).
var Flags = []string{
	"--add-opens=java.base/java.nio=ALL-UNNAMED",
	"--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
	"-XX:+UseG1GC",
}

// SparkFlags are the JVM options Spark 4 needs on Java 17 (jvm-reader/pom.xml's jvm.opens),
// for a JVM that runs Spark and is not started by spark-submit (which adds its own).
var SparkFlags = []string{
	"--add-opens=java.base/java.lang=ALL-UNNAMED",
	"--add-opens=java.base/java.lang.invoke=ALL-UNNAMED",
	"--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
	"--add-opens=java.base/java.io=ALL-UNNAMED",
	"--add-opens=java.base/java.net=ALL-UNNAMED",
	"--add-opens=java.base/java.util=ALL-UNNAMED",
	"--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
	"--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
	"--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
	"--add-opens=java.base/sun.nio.cs=ALL-UNNAMED",
	"--add-opens=java.base/sun.security.action=ALL-UNNAMED",
	"--add-opens=java.base/sun.util.calendar=ALL-UNNAMED",
	"-Dio.netty.tryReflectionSetAccessible=true",
}

// RepoRoot finds the repository root (the directory holding go.mod) from the working
// directory upwards.
func RepoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("jvm: go.mod not found above the working directory")
		}
		d = p
	}
}

// Classpath returns jvm-reader's compiled classes plus the dependency classpath that
// `make jvm` (mvn package) writes to jvm-reader/target/classpath.txt.
func Classpath() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	t := filepath.Join(root, "jvm-reader", "target")
	cp, err := os.ReadFile(filepath.Join(t, "classpath.txt"))
	if err != nil {
		return "", fmt.Errorf("jvm: %w: build the Java side first (make jvm)", err)
	}
	classes := filepath.Join(t, "classes")
	if _, err := os.Stat(classes); err != nil {
		return "", fmt.Errorf("jvm: %w: build the Java side first (make jvm)", err)
	}
	return classes + string(os.PathListSeparator) + filepath.Join(t, "test-classes") + string(os.PathListSeparator) + strings.TrimSpace(string(cp)), nil
}

// Command returns an exec.Cmd running mainClass with args in a new JVM. extraJVM are
// JVM options placed before the class (e.g. -Xmx, -XX:StartFlightRecording=...).
func Command(extraJVM []string, mainClass string, args ...string) (*exec.Cmd, error) {
	cp, err := Classpath()
	if err != nil {
		return nil, err
	}
	return CommandWithClasspath(cp, extraJVM, mainClass, args...), nil
}

// ModuleClasspath returns the classpath of a bench peer module of bench/java (flight,
// javaclient): its compiled classes plus the runtime classpath its build wrote to
// bench/java/<module>/target/classpath.txt. These peers carry libraries (gRPC, Netty,
// Google's client) that must not meet Spark's jars on jvm-reader's classpath.
func ModuleClasspath(module string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	t := filepath.Join(root, "bench", "java", module, "target")
	cp, err := os.ReadFile(filepath.Join(t, "classpath.txt"))
	if err != nil {
		return "", fmt.Errorf("jvm: %w: build the bench peers first (make bench-jvm)", err)
	}
	classes := filepath.Join(t, "classes")
	if _, err := os.Stat(classes); err != nil {
		return "", fmt.Errorf("jvm: %w: build the bench peers first (make bench-jvm)", err)
	}
	return classes + string(os.PathListSeparator) + strings.TrimSpace(string(cp)), nil
}

// CommandWithClasspath is Command with an explicit classpath (e.g. from ModuleClasspath).
func CommandWithClasspath(cp string, extraJVM []string, mainClass string, args ...string) *exec.Cmd {
	java := "java"
	if h := os.Getenv("JAVA_HOME"); h != "" {
		java = filepath.Join(h, "bin", "java")
	}
	a := append([]string{}, Flags...)
	a = append(a, extraJVM...)
	a = append(a, "-cp", cp, mainClass)
	a = append(a, args...)
	return exec.Command(java, a...)
}
